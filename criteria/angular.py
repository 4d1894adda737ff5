"""Angular loss (Wang, Zhou, Wen, Liu & Lin, "Deep Metric Learning with Angular Loss", ICCV 2017)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from batchminer import NPAIRS
from criteria import REGISTRY
from criteria.base import TupleLoss
from criteria.functional import masked_logsumexp
from criteria.npair import npair_terms
from utilities.flags import Bounded, flag


def angular_terms(batch: torch.Tensor, tuples, alpha_degrees: float, cos: torch.Tensor = None) -> torch.Tensor:
    """Per anchor a, on L2-normalised a, p, n and t = tan^2(alpha):

        log(1 + sum_{n in N_a} exp(4t (a + p).n - 2(1 + t) a.p))

    `cos` = the batch's cosine-similarity matrix when the caller has it already.
    """
    t = math.tan(math.radians(alpha_degrees)) ** 2
    if cos is None:
        x = F.normalize(batch, dim=1)
        cos = x @ x.T
    rows_a, rows_p = cos[tuples.anchors], cos[tuples.positives]
    logits = 4.0 * t * (rows_a + rows_p) - 2.0 * (1.0 + t) * rows_a.gather(1, tuples.positives[:, None])
    return masked_logsumexp(logits, tuples.negatives, add_one=True)


@REGISTRY.register("angular")
class AngularLoss(TupleLoss):
    """On the `npair` miner's tuples (anchor a, positive p, negatives N_a):

        L = mean_a npair_a + lambda * mean_a angular_a + l2 * mean_i ||x_i||_2
        npair_a   = log(1 + sum_n exp(clamp(x_a.x_n - x_a.x_p, -50, 50)))        (embeddings as given)
        angular_a = log(1 + sum_n exp(4t (a+p).n - 2(1+t) a.p))                  (normalised, t = tan^2 alpha)

    alpha = `alpha` (--loss_angular_alpha, degrees), lambda = `angular_weight` (--loss_angular_npair_ang_weight),
    l2 = `l2_weight` (--loss_angular_npair_l2):
    Wang et al.'s recommended N-pair + angular combination. The +-50 clamp of the N-pair exponent is a
    reference quirk kept for parity (it caps the loss of a badly violated tuple and zeroes its gradient).
    The reference stacked the negative sets, so every anchor needed as many negatives; masks lift that.
    No tuple: 0 with zero gradient.
    """

    ALLOWED_MINING_OPS = ("npair",)
    MINER_OUTPUT = NPAIRS
    FLAGS = (
        flag("--loss_angular_alpha", param="alpha", default=45, type=Bounded(float, gt=0, lt=90)),
        flag("--loss_angular_npair_ang_weight", param="angular_weight", default=2, type=Bounded(float, ge=0)),
        flag("--loss_angular_npair_l2", param="l2_weight", default=0.005, type=Bounded(float, ge=0)),
    )

    def __init__(self, alpha: float = 45, angular_weight: float = 2, l2_weight: float = 0.005, batchminer=None):
        super().__init__(batchminer)
        self.alpha = alpha
        self.angular_weight = angular_weight
        self.l2_weight = l2_weight

    def tuple_loss(self, batch: torch.Tensor, labels: torch.Tensor, tuples) -> torch.Tensor:
        gram = batch @ batch.T
        norms = gram.diagonal().clamp_min(1e-24).sqrt()
        cos = gram / (norms[:, None] * norms[None, :]).clamp_min(1e-12)
        npair = npair_terms(batch, tuples, clamp=50.0, gram=gram).mean()
        angular = angular_terms(batch, tuples, self.alpha, cos=cos).mean()
        return npair + self.angular_weight * angular + self.l2_weight * norms.mean()
