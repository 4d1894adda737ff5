"""ProxyNCA (Movshovitz-Attias, Toshev, Leung, Ioffe & Singh, "No Fuss Distance Metric Learning using
Proxies", ICCV 2017)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import Criterion, own_group
from criteria.functional import masked_logsumexp
from utilities.flags import Bounded, flag, times_lr

SCALE = 3.0


@REGISTRY.register("proxynca")
class ProxyNCALoss(Criterion):
    """One learnable proxy per training class, P in R^{C x D}. With x^ = 3 x/||x|| and p^_c = 3 p_c/||p_c||,
    d_ic = ||x^_i - p^_c||^2 = 18 (1 - cos(x_i, p_c)):

        L = mean_i [ d_{i,y_i} + log sum_{c != y_i} exp(-d_ic) ]  =  mean_i -log( e^{-d_iy} / sum_{c != y} e^{-d_ic} )

    The positive proxy is left out of the denominator, as in the paper and the reference (NCA proper, e.g.
    pytorch-metric-learning's ProxyNCALoss, keeps it in). The factor 3 is the reference's fixed scale.
    Proxies (`n_classes` x `embed_dim`) start at N(0, 1)/8 and train at `lr` without weight decay, also inside
    S2SD; the CLI sets lr = --lr x --loss_proxynca_lrmulti (the default, 5e-4, is the reference's 1e-5 x 50). (The reference's forward returned an undefined name.) Every sample has a positive proxy
    and C - 1 negatives, so no batch is degenerate; `last_tuple_count` is the batch size.
    """

    FLAGS = (flag("--loss_proxynca_lrmulti", param="lr", default=50, type=Bounded(float, ge=0), convert=times_lr),)

    def __init__(self, n_classes: int, embed_dim: int, lr: float = 5e-4):
        super().__init__()
        self.proxies = nn.Parameter(torch.randn(n_classes, embed_dim) / 8.0)
        self.lr = lr

    def param_groups(self):
        return own_group("proxynca_proxies", self.proxies, self.lr)

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        cos = F.normalize(batch, dim=1) @ F.normalize(self.proxies, dim=1).T
        dist = 2.0 * SCALE**2 * (1.0 - cos)
        positive = F.one_hot(labels, self.proxies.shape[0]).bool()
        d_pos = dist.gather(1, labels[:, None]).squeeze(1)
        self.record(len(labels))
        return (d_pos + masked_logsumexp(-dist, ~positive)).mean()
