"""SoftTriple loss (Qian, Shang, Sun, Hu, Li & Jin, "SoftTriple Loss: Deep Metric Learning Without Triplet
Sampling", ICCV 2019)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import Criterion, own_group
from utilities.flags import Bounded, flag, times_lr


@REGISTRY.register("softtriplet")
class SoftTripleLoss(Criterion):
    """K unit-norm centroids w_ck per class (K = `n_centroids`, --loss_softtriplet_n_centroids). With s_ick = x_i.w_ck on
    the normalised embedding:

        q_ick  = softmax_k( s_ick / gamma )                 (soft assignment over the class's K centroids)
        S_ic   = sum_k q_ick s_ick
        L_cls  = mean_i cross-entropy( lambda (S_i - delta e_{y_i}), y_i )
        L_reg  = sum_c sum_{k < k'} sqrt(2 + 1e-5 - 2 w_ck.w_ck') / (C K (K - 1))
        L      = L_cls + tau L_reg

    gamma, delta, lambda, tau = `gamma`, `margin_delta`, `lam`, `reg_weight` (--loss_softtriplet_{gamma,
    margin_delta, lambda, reg_weight}); L_reg is absent for K = 1. The centroids (a D x CK matrix, initialised
    U(-1/sqrt(CK), 1/sqrt(CK))) train at `lr` without weight decay, also inside S2SD; the CLI sets
    lr = --lr x --loss_softtriplet_lrmulti.

    Differs from the reference code, which normalised the centroid matrix along the wrong axis and took the
    softmax over the class axis with scale gamma; this follows the paper: each centroid normalised, softmax
    over a class's K centroids with scale 1/gamma. (The reference also read a missing lr flag and crashed.)
    The embedding is L2-normalised as in the paper. Never degenerate; `last_tuple_count` is the batch size.
    """

    FLAGS = (
        flag("--loss_softtriplet_n_centroids", param="n_centroids", default=2, type=Bounded(int, ge=1)),
        flag("--loss_softtriplet_margin_delta", param="margin_delta", default=0.01, type=Bounded(float, ge=0)),
        flag("--loss_softtriplet_gamma", param="gamma", default=0.1, type=Bounded(float, gt=0)),
        flag("--loss_softtriplet_lambda", param="lam", default=8, type=Bounded(float, gt=0)),
        flag("--loss_softtriplet_reg_weight", param="reg_weight", default=0.2, type=Bounded(float, ge=0)),
        flag("--loss_softtriplet_lrmulti", param="lr", default=1, type=Bounded(float, ge=0), convert=times_lr),
    )

    def __init__(self, n_classes: int, embed_dim: int, n_centroids: int = 2, margin_delta: float = 0.01,
                 gamma: float = 0.1, lam: float = 8, reg_weight: float = 0.2, lr: float = 0.00001):
        super().__init__()
        self.n_classes = n_classes
        self.n_centroids = n_centroids
        self.gamma = gamma
        self.delta = margin_delta
        self.lam = lam
        self.reg_weight = reg_weight
        bound = 1.0 / math.sqrt(n_classes * n_centroids)
        self.centroids = nn.Parameter(torch.empty(embed_dim, n_classes * n_centroids).uniform_(-bound, bound))
        self.lr = lr

    def param_groups(self):
        return own_group("softtriplet_centroids", self.centroids, self.lr)

    def regulariser(self, centroids: torch.Tensor) -> torch.Tensor:
        k = self.n_centroids
        if k < 2:
            return centroids.sum() * 0.0
        per_class = centroids.reshape(-1, self.n_classes, k)
        gram = torch.einsum("dck,dcl->ckl", per_class, per_class)
        i, j = torch.triu_indices(k, k, 1, device=centroids.device)
        return torch.sqrt(2.0 + 1e-5 - 2.0 * gram[:, i, j]).sum() / (self.n_classes * k * (k - 1))

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        centroids = F.normalize(self.centroids, dim=0)
        sims = (F.normalize(batch, dim=1) @ centroids).reshape(len(batch), self.n_classes, self.n_centroids)
        assignment = F.softmax(sims / self.gamma, dim=2)
        class_sims = (assignment * sims).sum(2)
        margin = F.one_hot(labels, self.n_classes).to(batch.dtype) * self.delta
        self.record(len(labels))
        loss = F.cross_entropy(self.lam * (class_sims - margin), labels)
        return loss + self.reg_weight * self.regulariser(centroids)
