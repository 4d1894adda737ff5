"""Signal-to-noise-ratio triplet loss (Yuan, Chen, Yang, Gao & Han, "Signal-To-Noise Ratio: A Robust
Distance Metric for Deep Metric Learning", CVPR 2019)."""
from __future__ import annotations

import torch

from criteria import REGISTRY
from criteria.base import Criterion


def snr_distance(anchor: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """SNR distance Var(a - o) / Var(a), variances over the embedding dimensions (unbiased, as torch.var)."""
    return (anchor - other).var(dim=1) / anchor.var(dim=1)


@REGISTRY.register("snr")
class SNRLoss(Criterion):
    """For mined triplets (a, p, n), with the SNR distance d_snr(a, o) = Var(x_a - x_o) / Var(x_a):

        L = sum relu(d_snr(a, p) - d_snr(a, n) + m) / max(1, #{terms > 0}) + lambda * mean_a |sum_k x_ak|

    m = --loss_snr_margin, lambda = --loss_snr_reg_lambda (the paper's zero-mean regulariser; the mean runs
    over the triplets' anchors). As in the reference, lambda is 0 under the `distance` and `random_distance`
    miners, whose weighting already assumes embeddings spread over the sphere. The reference divided by the
    number of active triplets even when it was 0 (NaN); here no active triplet gives an SNR term of 0 and
    no triplet at all gives 0 with zero gradient. `last_tuple_count` counts active triplets.
    """

    REQUIRES_BATCHMINER = True

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, batchminer, embed_dim)
        self.margin = opt.loss_snr_margin
        no_reg = batchminer is not None and batchminer.name in ("distance", "random_distance")
        self.reg_lambda = 0.0 if no_reg else opt.loss_snr_reg_lambda

    @property
    def mining_margin(self):
        return self.margin

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        triplets = self.batchminer(batch.detach(), labels)
        if len(triplets) == 0:
            self.record(0)
            return self.zero_loss(batch)
        a, p, n = self.triplet_embeddings(batch, triplets)
        terms = torch.relu(snr_distance(a, p) - snr_distance(a, n) + self.margin)
        active = (terms > 0).sum()
        self.record(active)
        return terms.sum() / active.clamp_min(1) + self.reg_lambda * a.sum(1).abs().mean()
