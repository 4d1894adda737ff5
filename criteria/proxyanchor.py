"""Proxy-Anchor loss (Kim, Kim, Cho & Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import Criterion, own_group
from criteria.functional import masked_logsumexp
from utilities.flags import Bounded, flag, times_lr


@REGISTRY.register("proxyanchor")
class ProxyAnchorLoss(Criterion):
    """One learnable proxy per class, P in R^{C x D}; s(x, p) is the cosine similarity, X_p+ the batch samples
    of proxy p's class, X_p- the others, P+ the proxies with at least one positive in the batch:

        L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x, p) - delta)))
          + 1/|P|  sum_{p in P}  log(1 + sum_{x in X_p-} exp( alpha (s(x, p) + delta)))

    alpha = `alpha` (--loss_proxyanchor_alpha, 32), delta = `delta` (--loss_proxyanchor_delta, 0.1). Proxies
    (`n_classes` x `embed_dim`) start from a Kaiming-normal (fan-out) draw and train at `lr` without weight
    decay, also inside S2SD; the CLI sets lr = --lr x --loss_proxyanchor_lrmulti (100, as the paper's code). Not in the reference. Every batch has at least one
    positive proxy, so none is degenerate; `last_tuple_count` is the batch size.
    """

    FLAGS = (
        flag("--loss_proxyanchor_alpha", param="alpha", default=32, type=Bounded(float, gt=0),
             help="Proxy-Anchor scale alpha."),
        flag("--loss_proxyanchor_delta", param="delta", default=0.1, type=Bounded(float, ge=0),
             help="Proxy-Anchor margin delta."),
        flag("--loss_proxyanchor_lrmulti", param="lr", default=100, type=Bounded(float, ge=0), convert=times_lr,
             help="Proxy lr = --lr x this."),
    )

    def __init__(self, n_classes: int, embed_dim: int, alpha: float = 32, delta: float = 0.1, lr: float = 1e-3):
        super().__init__()
        self.proxies = nn.Parameter(torch.empty(n_classes, embed_dim))
        nn.init.kaiming_normal_(self.proxies, mode="fan_out")
        self.alpha = alpha
        self.delta = delta
        self.lr = lr

    def param_groups(self):
        return own_group("proxyanchor_proxies", self.proxies, self.lr)

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        cos = F.normalize(self.proxies, dim=1) @ F.normalize(batch, dim=1).T
        positive = F.one_hot(labels, self.proxies.shape[0]).T.bool()
        pos_term = masked_logsumexp(-self.alpha * (cos - self.delta), positive, add_one=True)
        neg_term = masked_logsumexp(self.alpha * (cos + self.delta), ~positive, add_one=True)
        n_with_pos = positive.any(1).sum()
        self.record(len(labels))
        return pos_term.sum() / n_with_pos.clamp_min(1) + neg_term.mean()
