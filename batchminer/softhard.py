"""Soft-hard mining: random hard positives and random hard negatives (Roth et al. 2020 "softhard")."""
from __future__ import annotations

import torch

from batchminer import REGISTRY
from batchminer.base import BatchMiner, as_triplets, pairwise, uniform_choice


@REGISTRY.register("softhard")
class SofthardMiner(BatchMiner):
    """Per anchor with a positive and a negative:

    * positive: random among positives farther than the nearest negative (d_ap > min_n d_an), else any positive;
    * negative: random among negatives closer than the farthest positive (d_an < max_p d_ap), else any negative.
    """

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist, pos, neg = pairwise(batch, labels)
        valid = pos.any(1) & neg.any(1)
        nearest_neg = dist.masked_fill(~neg, float("inf")).min(1, keepdim=True).values
        farthest_pos = dist.masked_fill(~pos, float("-inf")).max(1, keepdim=True).values
        hard_pos = pos & (dist > nearest_neg)
        hard_neg = neg & (dist < farthest_pos)
        positives = uniform_choice(torch.where(hard_pos.any(1, keepdim=True), hard_pos, pos))
        negatives = uniform_choice(torch.where(hard_neg.any(1, keepdim=True), hard_neg, neg))
        anchors = torch.arange(len(labels), device=batch.device)
        return as_triplets(anchors, positives, negatives)[valid]
