"""Triplet loss (Schroff et al., "FaceNet", CVPR 2015) on mined triplets."""
from __future__ import annotations

import torch

from criteria import REGISTRY
from criteria.base import TupleLoss
from utilities.flags import Bounded, flag


@REGISTRY.register("triplet")
class TripletLoss(TupleLoss):
    """L = mean_{(a,p,n)} relu(||x_a - x_p||^2 - ||x_a - x_n||^2 + m), m = `margin` (--loss_triplet_margin).

    Distances are squared Euclidean, as in the reference. The loss is 0 (with zero gradient) when the
    miner returns no triplet.
    """

    FLAGS = (flag("--loss_triplet_margin", param="margin", default=0.2, type=Bounded(float, ge=0)),)

    def __init__(self, margin: float = 0.2, batchminer=None):
        super().__init__(batchminer)
        self.margin = margin

    @property
    def mining_margin(self):
        return self.margin

    def tuple_loss(self, batch: torch.Tensor, labels: torch.Tensor, triplets: torch.Tensor) -> torch.Tensor:
        d_ap, d_an = self.triplet_distances(batch, triplets, squared=True)
        return torch.relu(d_ap - d_an + self.margin).mean()
