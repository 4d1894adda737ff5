"""Generalised lifted structure loss (Oh Song et al., CVPR 2016; the generalisation of Hermans, Beyer &
Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017)."""
from __future__ import annotations

import torch

from criteria import REGISTRY
from criteria.base import Criterion
from criteria.distances import euclidean
from criteria.functional import masked_logsumexp


@REGISTRY.register("lifted")
class LiftedLoss(Criterion):
    """On the `lifted` miner's tuples (anchor a, positives P_a, negatives N_a), with d the Euclidean distance:

        L = mean_a relu( log sum_{p in P_a} exp(d_ap) + log sum_{n in N_a} exp(m - d_an) ) + l2 * mean_i ||x_i||

    m = --loss_lifted_neg_margin, l2 = --loss_lifted_l2. The reference took the norm over the set axis of a
    broadcast tensor instead of the feature axis, so its "distances" were one value per feature dimension;
    this loss uses true pairwise distances. No tuple: 0 with zero gradient.
    """

    REQUIRES_BATCHMINER = True
    ALLOWED_MINING_OPS = ("lifted",)
    MINER_OUTPUT = "lifted"

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, batchminer, embed_dim)
        self.margin = opt.loss_lifted_neg_margin
        self.l2_weight = opt.loss_lifted_l2

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        tuples = self.batchminer(batch.detach(), labels)
        self.record(len(tuples))
        if len(tuples) == 0:
            return self.zero_loss(batch)
        dist = euclidean(batch[tuples.anchors], batch)
        pos = masked_logsumexp(dist, tuples.positives)
        neg = masked_logsumexp(self.margin - dist, tuples.negatives)
        return torch.relu(pos + neg).mean() + self.l2_weight * batch.norm(dim=1).mean()
