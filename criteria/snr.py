"""Signal-to-noise-ratio triplet loss (Yuan, Chen, Yang, Gao & Han, "Signal-To-Noise Ratio: A Robust
Distance Metric for Deep Metric Learning", CVPR 2019)."""
from __future__ import annotations

import torch

from criteria import REGISTRY
from criteria.base import TupleLoss
from utilities.flags import Bounded, flag


def snr_distance(anchor: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """SNR distance Var(a - o) / Var(a), variances over the embedding dimensions (unbiased, as torch.var)."""
    return (anchor - other).var(dim=1) / anchor.var(dim=1)


def reference_reg_lambda(reg_lambda: float, miner: str) -> float:
    """The reference dropped the regulariser under the `distance` and `random_distance` miners."""
    return 0.0 if miner in ("distance", "random_distance") else reg_lambda


@REGISTRY.register("snr")
class SNRLoss(TupleLoss):
    """For mined triplets (a, p, n), with the SNR distance d_snr(a, o) = Var(x_a - x_o) / Var(x_a):

        L = sum relu(d_snr(a, p) - d_snr(a, n) + m) / max(1, #{terms > 0}) + lambda * mean_a |sum_k x_ak|

    m = `margin` (--loss_snr_margin), lambda = `reg_lambda` (--loss_snr_reg_lambda; the paper's zero-mean
    regulariser, the mean runs over the triplets' anchors). As in the reference, the CLI sets lambda to 0
    under the `distance` and `random_distance` miners, whose weighting already assumes embeddings spread over
    the sphere (`reference_reg_lambda`); built in Python, the loss uses the lambda it is given. The reference
    divided by the number of active triplets even when it was 0 (NaN); here no active triplet gives an SNR
    term of 0 and no triplet at all gives 0 with zero gradient. `last_tuple_count` counts active triplets.
    """

    FLAGS = (
        flag("--loss_snr_margin", param="margin", default=0.2, type=Bounded(float, ge=0)),
        flag("--loss_snr_reg_lambda", param="reg_lambda", default=0.005, type=Bounded(float, ge=0),
             convert=lambda reg_lambda, opt: reference_reg_lambda(reg_lambda, opt.batch_mining)),
    )

    def __init__(self, margin: float = 0.2, reg_lambda: float = 0.005, batchminer=None):
        super().__init__(batchminer)
        self.margin = margin
        self.reg_lambda = reg_lambda

    @property
    def mining_margin(self):
        return self.margin

    def tuple_loss(self, batch: torch.Tensor, labels: torch.Tensor, triplets: torch.Tensor) -> torch.Tensor:
        a, p, n = self.triplet_embeddings(batch, triplets)
        terms = torch.relu(snr_distance(a, p) - snr_distance(a, n) + self.margin)
        active = (terms > 0).sum()
        self.record(active)
        return terms.sum() / active.clamp_min(1) + self.reg_lambda * a.sum(1).abs().mean()
