"""Triplet loss (Schroff et al., "FaceNet", CVPR 2015) on mined triplets."""
from __future__ import annotations

import torch

from criteria import REGISTRY
from criteria.base import Criterion


@REGISTRY.register("triplet")
class TripletLoss(Criterion):
    """L = mean_{(a,p,n)} relu(||x_a - x_p||^2 - ||x_a - x_n||^2 + m), m = --loss_triplet_margin.

    Distances are squared Euclidean, as in the reference. The loss is 0 (with zero gradient) when the
    miner returns no triplet.
    """

    REQUIRES_BATCHMINER = True

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, batchminer, embed_dim)
        self.margin = opt.loss_triplet_margin

    @property
    def mining_margin(self):
        return self.margin

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        triplets = self.batchminer(batch.detach(), labels)
        self.record(len(triplets))
        if len(triplets) == 0:
            return self.zero_loss(batch)
        a, p, n = self.triplet_embeddings(batch, triplets)
        d_ap = (a - p).pow(2).sum(1)
        d_an = (a - n).pow(2).sum(1)
        return torch.relu(d_ap - d_an + self.margin).mean()
