"""Easy-positive, distance-weighted-negative triplets (Xuan et al. 2020 positives, Wu et al. 2017 negatives)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from batchminer import REGISTRY
from batchminer.base import BatchMiner, as_triplets, nearest, pairwise
from batchminer.distance import sample_distance_weighted_negatives


@REGISTRY.register("epdn")
class EPDNMiner(BatchMiner):
    """Per anchor with a positive and a negative: the nearest same-class sample as positive, and a negative
    drawn by distance-weighted sampling exactly as the `distance` miner does (on L2-normalised embeddings,
    --miner_distance_lower_cutoff / --miner_distance_upper_cutoff).

    The reference took the positive from the boolean mask (always sample 1).
    """

    name = "epdn"

    def __init__(self, opt):
        super().__init__(opt)
        self.lower_cutoff = opt.miner_distance_lower_cutoff
        self.upper_cutoff = opt.miner_distance_upper_cutoff

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist, pos, neg = pairwise(F.normalize(batch.detach(), dim=-1), labels)
        valid = pos.any(1) & neg.any(1)
        positives = nearest(dist, pos)
        negatives = sample_distance_weighted_negatives(dist, neg, batch.shape[1], self.lower_cutoff, self.upper_cutoff)
        anchors = torch.arange(len(labels), device=batch.device)
        return as_triplets(anchors, positives, negatives)[valid]
