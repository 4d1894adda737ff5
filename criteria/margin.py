"""Margin loss (Wu, Manmatha, Smola & Kraehenbuehl, "Sampling Matters in Deep Embedding Learning", ICCV 2017)."""
from __future__ import annotations

import torch
import torch.nn as nn

from criteria import REGISTRY
from criteria.base import TupleLoss, own_group
from utilities.flags import Bounded, flag, reads


@REGISTRY.register("margin")
class MarginLoss(TupleLoss):
    """For mined triplets (a, p, n), with d = sqrt(||.||^2 + 1e-8), beta = beta[y_a] and margin alpha:

        pos = relu(d_ap - beta + alpha),   neg = relu(beta - d_an + alpha)
        L   = (sum(pos + neg) + nu * sum_a beta[y_a]) / max(1, N)

    with the normaliser N chosen by `normaliser`:

    * "terms" (default): N = #{pos > 0} + #{neg > 0}, the number of active terms (Wu et al.'s count, as in
      pytorch-metric-learning);
    * "or" (--reference_parity): N = #{pos > 0 or neg > 0}, the number of triplets with any active term.
      The reference wrote `torch.sum((pos > 0.) + (neg > 0.))` meaning the first count, but `+` on bool
      tensors is a logical OR, so it computed this one, and its published margin and margin + S2SD
      numbers were made with it.

    N_or <= N_terms <= 2 N_or, so the default loss and its gradients are N_or / N_terms times the
    reference's: 0.55-0.64 on realistic batches (epoch means, single batches 0.51-0.72; measured by
    benchmarks/margin_normaliser.py on glyph batches of 112 at 2 per class with the `distance` miner, with and
    without its upper cutoff, beta = 1.2, 128-d, from the fresh embedding through four epochs of training;
    docs/reference_parity.md). Under
    S2SD this weighs the margin terms 1.6-1.8x lower against the KL terms than the published runs did.

    beta is a learnable per-class vector (`n_classes` entries) initialised to `beta` (--loss_margin_beta,
    1.2) and trained at `beta_lr` (--loss_margin_beta_lr) without weight decay, also inside S2SD (the
    reference trained it at --lr there; --reference_parity does too); with `learn_beta=False`
    (--loss_margin_beta_constant) it is a fixed number. The nu term (`nu`, --loss_margin_nu) is Wu et al.'s
    beta regulariser (it crashed in the reference). alpha = `margin` (--loss_margin_margin, 0.2).
    """

    FLAGS = (
        flag("--loss_margin_margin", param="margin", default=0.2, type=Bounded(float, ge=0)),
        flag("--loss_margin_beta_lr", param="beta_lr", default=0.0005, type=Bounded(float, ge=0)),
        flag("--loss_margin_beta", param="beta", default=1.2, type=Bounded(float, ge=0)),
        flag("--loss_margin_nu", param="nu", default=0, type=Bounded(float, ge=0)),
        flag("--loss_margin_beta_constant", param="learn_beta", action="store_true",
             convert=lambda constant, opt: not constant),
        reads("reference_parity", "normaliser", convert=lambda parity, opt: "or" if parity else "terms"),
    )
    #: The constructor keyword of the lr set by this loss's own absolute-lr flag; the reference's S2SD
    #: trained beta at --lr instead (Criterion.OWN_LR_PARAM).
    OWN_LR_PARAM = "beta_lr"
    NORMALISERS = ("terms", "or")

    def __init__(self, n_classes: int, margin: float = 0.2, beta_lr: float = 0.0005, beta: float = 1.2,
                 nu: float = 0, learn_beta: bool = True, normaliser: str = "terms", batchminer=None):
        super().__init__(batchminer)
        if normaliser not in self.NORMALISERS:
            raise ValueError(f"MarginLoss: normaliser must be one of {', '.join(self.NORMALISERS)}, not {normaliser!r}")
        self.normaliser = normaliser
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
        if self.normaliser == "or":
            active = ((pos > 0) | (neg > 0)).sum()
        else:
            active = (pos > 0).sum() + (neg > 0).sum()
        self.record(active)
        total = (pos + neg).sum() + self.nu * beta.sum()
        return total / active.clamp_min(1)
