"""Semi-hard negative mining (Schroff, Kalenichenko & Philbin, "FaceNet", CVPR 2015)."""
from __future__ import annotations

import torch

from batchminer import REGISTRY
from batchminer.base import MarginAwareMiner, as_triplets, pairwise, uniform_choice


@REGISTRY.register("semihard")
class SemihardMiner(MarginAwareMiner):
    """Per anchor: a random positive p, and a random negative n with d_ap < d_an < d_ap + m when one exists,
    else a random negative.

    The margin m is the margin of the loss this miner serves (triplet: --loss_triplet_margin, margin:
    --loss_margin_margin, ...), read from the loss at each call, including S2SD's source and target losses. A
    loss without a margin of its own falls back to `margin` (--loss_triplet_margin; the reference raised a
    KeyError).
    """

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist, pos, neg = pairwise(batch, labels)
        valid = pos.any(1) & neg.any(1)
        anchors = torch.arange(len(labels), device=batch.device)
        positives = uniform_choice(pos)
        d_ap = dist[anchors, positives][:, None]
        semihard = neg & (dist > d_ap) & (dist < d_ap + self.margin)
        candidates = torch.where(semihard.any(1, keepdim=True), semihard, neg)
        negatives = uniform_choice(candidates)
        return as_triplets(anchors, positives, negatives)[valid]
