"""Generalised lifted structure loss (Oh Song et al., CVPR 2016; the generalisation of Hermans, Beyer &
Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017)."""
from __future__ import annotations

import torch

from batchminer import LIFTED
from criteria import REGISTRY
from criteria.base import TupleLoss
from criteria.functional import masked_logsumexp
from utilities.flags import Bounded, flag
from utilities.geometry import euclidean


@REGISTRY.register("lifted")
class LiftedLoss(TupleLoss):
    """On the `lifted` miner's tuples (anchor a, positives P_a, negatives N_a), with d the Euclidean distance:

        L = mean_a relu( log sum_{p in P_a} exp(d_ap) + log sum_{n in N_a} exp(m - d_an) ) + l2 * mean_i ||x_i||

    m = `neg_margin` (--loss_lifted_neg_margin), l2 = `l2_weight` (--loss_lifted_l2). The reference took the norm over the set axis of a
    broadcast tensor instead of the feature axis, so its "distances" were one value per feature dimension;
    this loss uses true pairwise distances. No tuple: 0 with zero gradient.
    """

    ALLOWED_MINING_OPS = ("lifted",)
    MINER_OUTPUT = LIFTED
    FLAGS = (
        flag("--loss_lifted_neg_margin", param="neg_margin", default=1, type=Bounded(float, ge=0)),
        flag("--loss_lifted_l2", param="l2_weight", default=0.005, type=Bounded(float, ge=0)),
    )

    def __init__(self, neg_margin: float = 1, l2_weight: float = 0.005, batchminer=None):
        super().__init__(batchminer)
        self.margin = neg_margin
        self.l2_weight = l2_weight

    def tuple_loss(self, batch: torch.Tensor, labels: torch.Tensor, tuples) -> torch.Tensor:
        dist = euclidean(batch[tuples.anchors], batch)
        pos = masked_logsumexp(dist, tuples.positives)
        neg = masked_logsumexp(self.margin - dist, tuples.negatives)
        return torch.relu(pos + neg).mean() + self.l2_weight * batch.norm(dim=1).mean()
