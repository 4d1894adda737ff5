"""Proxy-Anchor loss (Kim, Kim, Cho & Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import Criterion
from criteria.functional import masked_logsumexp


@REGISTRY.register("proxyanchor")
class ProxyAnchorLoss(Criterion):
    """One learnable proxy per class, P in R^{C x D}; s(x, p) is the cosine similarity, X_p+ the batch samples
    of proxy p's class, X_p- the others, P+ the proxies with at least one positive in the batch:

        L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x, p) - delta)))
          + 1/|P|  sum_{p in P}  log(1 + sum_{x in X_p-} exp( alpha (s(x, p) + delta)))

    alpha = --loss_proxyanchor_alpha (32), delta = --loss_proxyanchor_delta (0.1). Proxies start from a
    Kaiming-normal (fan-out) draw and train at lr = --lr x --loss_proxyanchor_lrmulti (100, as the paper's
    code) without weight decay, also inside S2SD. Not in the reference. Every batch has at least one
    positive proxy, so none is degenerate; `last_tuple_count` is the batch size.
    """

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, batchminer, embed_dim)
        self.proxies = nn.Parameter(torch.empty(opt.n_classes, self.embed_dim))
        nn.init.kaiming_normal_(self.proxies, mode="fan_out")
        self.alpha = opt.loss_proxyanchor_alpha
        self.delta = opt.loss_proxyanchor_delta
        self.lr = opt.lr * opt.loss_proxyanchor_lrmulti

    def param_groups(self):
        return [{"params": [self.proxies], "lr": self.lr, "weight_decay": 0.0, "name": "proxyanchor_proxies"}]

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        cos = F.normalize(self.proxies, dim=1) @ F.normalize(batch, dim=1).T
        positive = F.one_hot(labels, self.proxies.shape[0]).T.bool()
        pos_term = masked_logsumexp(-self.alpha * (cos - self.delta), positive, add_one=True)
        neg_term = masked_logsumexp(self.alpha * (cos + self.delta), ~positive, add_one=True)
        n_with_pos = positive.any(1).sum()
        self.record(len(labels))
        return pos_term.sum() / n_with_pos.clamp_min(1) + neg_term.mean()
