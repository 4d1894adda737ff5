"""Angular loss (Wang, Zhou, Wen, Liu & Lin, "Deep Metric Learning with Angular Loss", ICCV 2017)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import Criterion
from criteria.functional import masked_logsumexp
from criteria.npair import npair_terms


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
class AngularLoss(Criterion):
    """On the `npair` miner's tuples (anchor a, positive p, negatives N_a):

        L = mean_a npair_a + lambda * mean_a angular_a + l2 * mean_i ||x_i||_2
        npair_a   = log(1 + sum_n exp(clamp(x_a.x_n - x_a.x_p, -50, 50)))        (embeddings as given)
        angular_a = log(1 + sum_n exp(4t (a+p).n - 2(1+t) a.p))                  (normalised, t = tan^2 alpha)

    alpha = --loss_angular_alpha (degrees), lambda = --loss_angular_npair_ang_weight, l2 = --loss_angular_npair_l2:
    Wang et al.'s recommended N-pair + angular combination. The +-50 clamp of the N-pair exponent is a
    reference quirk kept for parity (it caps the loss of a badly violated tuple and zeroes its gradient).
    The reference stacked the negative sets, so every anchor needed as many negatives; masks lift that.
    No tuple: 0 with zero gradient.
    """

    REQUIRES_BATCHMINER = True
    ALLOWED_MINING_OPS = ("npair",)
    MINER_OUTPUT = "npairs"

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, batchminer, embed_dim)
        self.alpha = opt.loss_angular_alpha
        self.angular_weight = opt.loss_angular_npair_ang_weight
        self.l2_weight = opt.loss_angular_npair_l2

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        tuples = self.batchminer(batch.detach(), labels)
        self.record(len(tuples))
        if len(tuples) == 0:
            return self.zero_loss(batch)
        gram = batch @ batch.T
        norms = gram.diagonal().clamp_min(1e-24).sqrt()
        cos = gram / (norms[:, None] * norms[None, :]).clamp_min(1e-12)
        npair = npair_terms(batch, tuples, clamp=50.0, gram=gram).mean()
        angular = angular_terms(batch, tuples, self.alpha, cos=cos).mean()
        return npair + self.angular_weight * angular + self.l2_weight * norms.mean()
