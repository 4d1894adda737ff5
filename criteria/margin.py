"""Margin loss (Wu, Manmatha, Smola & Kraehenbuehl, "Sampling Matters in Deep Embedding Learning", ICCV 2017)."""
from __future__ import annotations

import torch
import torch.nn as nn

from criteria import REGISTRY
from criteria.base import Criterion


@REGISTRY.register("margin")
class MarginLoss(Criterion):
    """For mined triplets (a, p, n), with d = sqrt(||.||^2 + 1e-8), beta = beta[y_a] and margin alpha:

        pos = relu(d_ap - beta + alpha),   neg = relu(beta - d_an + alpha)
        L   = (sum(pos + neg) + nu * sum_a beta[y_a]) / max(1, #{pos > 0} + #{neg > 0})

    beta is a learnable per-class vector initialised to --loss_margin_beta (1.2) and trained at
    --loss_margin_beta_lr without weight decay, also inside S2SD (the reference trained it at --lr there);
    with --loss_margin_beta_constant it is a fixed number. The nu term is Wu et al.'s beta regulariser
    (it crashed in the reference). alpha = --loss_margin_margin (0.2).
    """

    REQUIRES_BATCHMINER = True

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, batchminer, embed_dim)
        self.margin = opt.loss_margin_margin
        self.nu = opt.loss_margin_nu
        self.beta_lr = opt.loss_margin_beta_lr
        self.learn_beta = not opt.loss_margin_beta_constant
        beta = torch.full((opt.n_classes,), float(opt.loss_margin_beta))
        if self.learn_beta:
            self.beta = nn.Parameter(beta)
        else:
            self.register_buffer("beta", beta)

    @property
    def mining_margin(self):
        return self.margin

    def param_groups(self):
        if not self.learn_beta:
            return []
        return [{"params": [self.beta], "lr": self.beta_lr, "weight_decay": 0.0, "name": "margin_beta"}]

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        triplets = self.batchminer(batch.detach(), labels)
        if len(triplets) == 0:
            self.record(0)
            return self.zero_loss(batch) + self.beta.sum() * 0.0
        a, p, n = self.triplet_embeddings(batch, triplets)
        d_ap = ((a - p).pow(2).sum(1) + 1e-8).sqrt()
        d_an = ((a - n).pow(2).sum(1) + 1e-8).sqrt()
        beta = self.beta[labels[triplets[:, 0]]]
        pos = torch.relu(d_ap - beta + self.margin)
        neg = torch.relu(beta - d_an + self.margin)
        active = (pos > 0).sum() + (neg > 0).sum()
        self.record(active)
        total = (pos + neg).sum() + self.nu * beta.sum()
        return total / active.clamp_min(1)
