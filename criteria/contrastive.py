"""Contrastive loss (Hadsell, Chopra & LeCun, CVPR 2006) on the pairs of mined triplets."""
from __future__ import annotations

import torch

from criteria import REGISTRY
from criteria.base import TupleLoss
from utilities.flags import Bounded, flag


@REGISTRY.register("contrastive")
class ContrastiveLoss(TupleLoss):
    """L = mean_{(a,p)} relu(d_ap - m_pos) + mean_{(a,n)} relu(m_neg - d_an).

    The pairs (a, p) and (a, n) come from the mined triplets; d is the (non-squared) Euclidean distance
    sqrt(||.||^2 + 1e-8); m_pos = `pos_margin` (--loss_contrastive_pos_margin, 0), m_neg = `neg_margin`
    (--loss_contrastive_neg_margin, 1).
    """

    FLAGS = (
        flag("--loss_contrastive_pos_margin", param="pos_margin", default=0, type=Bounded(float, ge=0)),
        flag("--loss_contrastive_neg_margin", param="neg_margin", default=1, type=Bounded(float, ge=0)),
    )

    def __init__(self, pos_margin: float = 0, neg_margin: float = 1, batchminer=None):
        super().__init__(batchminer)
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin

    def tuple_loss(self, batch: torch.Tensor, labels: torch.Tensor, triplets: torch.Tensor) -> torch.Tensor:
        d_ap, d_an = self.triplet_distances(batch, triplets)
        return torch.relu(d_ap - self.pos_margin).mean() + torch.relu(self.neg_margin - d_an).mean()
