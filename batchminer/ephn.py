"""Easy-positive, hard-negative triplets (Xuan, Stylianou & Pless, "Improved Embeddings with Easy
Positive Triplet Mining", WACV 2020)."""
from __future__ import annotations

import torch

from batchminer import REGISTRY
from batchminer.base import BatchMiner, as_triplets, first_nonempty, nearest, pairwise, uniform_choice


@REGISTRY.register("ephn")
class EPHNMiner(BatchMiner):
    """Per anchor with a positive and a negative: the nearest same-class sample as positive (the easy
    positive), and a random negative closer than the anchor's farthest positive, else any negative (the
    reference's hard-negative rule).

    The reference took the positive's index from the boolean mask instead of the argmin position, so its
    positive was always batch sample 1; here it is the nearest positive.
    """

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist, pos, neg = pairwise(batch, labels)
        valid = pos.any(1) & neg.any(1)
        positives = nearest(dist, pos)
        farthest_pos = dist.masked_fill(~pos, float("-inf")).max(1, keepdim=True).values
        negatives = uniform_choice(first_nonempty(neg & (dist < farthest_pos), neg))
        anchors = torch.arange(len(labels), device=batch.device)
        return as_triplets(anchors, positives, negatives)[valid]
