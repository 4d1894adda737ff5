"""Normalised softmax (Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import Criterion


@REGISTRY.register("softmax")
class NormSoftmaxLoss(Criterion):
    """Cross-entropy over cosine logits with temperature T = --loss_softmax_temperature:

        L = mean_i -log softmax_c( cos(x_i, w_c) / T )_{y_i}

    with class weights W in R^{C x D} initialised U(-1/sqrt(D), 1/sqrt(D)) and trained at --loss_softmax_lr
    (an absolute lr, without weight decay, also inside S2SD where the reference used --lr). The embedding is
    L2-normalised as in the paper; the reference used it as given (the same on `_normalize` archs).
    Never degenerate; `last_tuple_count` is the batch size.
    """

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, batchminer, embed_dim)
        bound = 1.0 / math.sqrt(self.embed_dim)
        self.class_weights = nn.Parameter(torch.empty(opt.n_classes, self.embed_dim).uniform_(-bound, bound))
        self.temperature = opt.loss_softmax_temperature
        self.lr = opt.loss_softmax_lr

    def param_groups(self):
        return [{"params": [self.class_weights], "lr": self.lr, "weight_decay": 0.0, "name": "softmax_weights"}]

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        logits = F.normalize(batch, dim=1) @ F.normalize(self.class_weights, dim=1).T
        self.record(len(labels))
        return F.cross_entropy(logits / self.temperature, labels)
