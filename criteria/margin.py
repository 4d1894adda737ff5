"""Margin loss (Wu, Manmatha, Smola & Kraehenbuehl, "Sampling Matters in Deep Embedding Learning", ICCV 2017)."""
from __future__ import annotations

import torch
import torch.nn as nn

from criteria import REGISTRY
from criteria.base import TupleLoss, own_group
from utilities.flags import Bounded, flag


@REGISTRY.register("margin")
class MarginLoss(TupleLoss):
    """For mined triplets (a, p, n), with d = sqrt(||.||^2 + 1e-8), beta = beta[y_a] and margin alpha:

        pos = relu(d_ap - beta + alpha),   neg = relu(beta - d_an + alpha)
        L   = (sum(pos + neg) + nu * sum_a beta[y_a]) / max(1, #{pos > 0} + #{neg > 0})

    beta is a learnable per-class vector (`n_classes` entries) initialised to `beta` (--loss_margin_beta,
    1.2) and trained at `beta_lr` (--loss_margin_beta_lr) without weight decay, also inside S2SD (the
    reference trained it at --lr there); with `learn_beta=False` (--loss_margin_beta_constant) it is a fixed
    number. The nu term (`nu`, --loss_margin_nu) is Wu et al.'s beta regulariser (it crashed in the
    reference). alpha = `margin` (--loss_margin_margin, 0.2).
    """

    FLAGS = (
        flag("--loss_margin_margin", param="margin", default=0.2, type=Bounded(float, ge=0)),
        flag("--loss_margin_beta_lr", param="beta_lr", default=0.0005, type=Bounded(float, ge=0)),
        flag("--loss_margin_beta", param="beta", default=1.2, type=Bounded(float, ge=0)),
        flag("--loss_margin_nu", param="nu", default=0, type=Bounded(float, ge=0)),
        flag("--loss_margin_beta_constant", param="learn_beta", action="store_true",
             convert=lambda constant, opt: not constant),
    )

    def __init__(self, n_classes: int, margin: float = 0.2, beta_lr: float = 0.0005, beta: float = 1.2,
                 nu: float = 0, learn_beta: bool = True, batchminer=None):
        super().__init__(batchminer)
        self.margin = margin
        self.nu = nu
        self.beta_lr = beta_lr
        self.learn_beta = learn_beta
        initial = torch.full((n_classes,), float(beta))
        if learn_beta:
            self.beta = nn.Parameter(initial)
        else:
            self.register_buffer("beta", initial)

    @property
    def mining_margin(self):
        return self.margin

    def param_groups(self):
        return own_group("margin_beta", self.beta, self.beta_lr) if self.learn_beta else []

    def empty_loss(self, batch: torch.Tensor) -> torch.Tensor:
        return self.zero_loss(batch) + self.beta.sum() * 0.0

    def tuple_loss(self, batch: torch.Tensor, labels: torch.Tensor, triplets: torch.Tensor) -> torch.Tensor:
        d_ap, d_an = self.triplet_distances(batch, triplets)
        beta = self.beta[labels[triplets[:, 0]]]
        pos = torch.relu(d_ap - beta + self.margin)
        neg = torch.relu(beta - d_an + self.margin)
        active = (pos > 0).sum() + (neg > 0).sum()
        self.record(active)
        total = (pos + neg).sum() + self.nu * beta.sum()
        return total / active.clamp_min(1)
