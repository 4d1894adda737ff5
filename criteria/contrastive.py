"""Contrastive loss (Hadsell, Chopra & LeCun, CVPR 2006) on the pairs of mined triplets."""
from __future__ import annotations

import torch

from criteria import REGISTRY
from criteria.base import Criterion


@REGISTRY.register("contrastive")
class ContrastiveLoss(Criterion):
    """L = mean_{(a,p)} relu(d_ap - m_pos) + mean_{(a,n)} relu(m_neg - d_an).

    The pairs (a, p) and (a, n) come from the mined triplets; d is the (non-squared) Euclidean distance
    sqrt(||.||^2 + 1e-8); m_pos = --loss_contrastive_pos_margin (0), m_neg = --loss_contrastive_neg_margin (1).
    """

    REQUIRES_BATCHMINER = True

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, batchminer, embed_dim)
        self.pos_margin = opt.loss_contrastive_pos_margin
        self.neg_margin = opt.loss_contrastive_neg_margin

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        triplets = self.batchminer(batch.detach(), labels)
        self.record(len(triplets))
        if len(triplets) == 0:
            return self.zero_loss(batch)
        a, p, n = self.triplet_embeddings(batch, triplets)
        d_ap = ((a - p).pow(2).sum(1) + 1e-8).sqrt()
        d_an = ((a - n).pow(2).sum(1) + 1e-8).sqrt()
        return torch.relu(d_ap - self.pos_margin).mean() + torch.relu(self.neg_margin - d_an).mean()
