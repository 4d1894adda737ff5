"""Easy-positive, semi-hard-negative triplets (Xuan, Stylianou & Pless, WACV 2020)."""
from __future__ import annotations

import torch

from batchminer import REGISTRY
from batchminer.base import MarginAwareMiner, as_triplets, first_nonempty, nearest, pairwise, uniform_choice


@REGISTRY.register("epshn")
class EPSHNMiner(MarginAwareMiner):
    """Per anchor with a positive and a negative: the nearest same-class sample p as positive, and a random
    negative n with d_ap < d_an < d_ap + m when one exists, else any negative.

    m is the margin of the loss this miner serves, bound like `semihard`'s (--loss_triplet_margin for a
    loss without one). The reference module could not run (undefined names) and took the positive from the
    boolean mask (always sample 1).
    """

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist, pos, neg = pairwise(batch, labels)
        valid = pos.any(1) & neg.any(1)
        anchors = torch.arange(len(labels), device=batch.device)
        positives = nearest(dist, pos)
        d_ap = dist[anchors, positives][:, None]
        negatives = uniform_choice(first_nonempty(neg & (dist > d_ap) & (dist < d_ap + self.margin), neg))
        return as_triplets(anchors, positives, negatives)[valid]
