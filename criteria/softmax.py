"""Normalised softmax (Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import ClassWeightLoss
from utilities.flags import Bounded, flag


@REGISTRY.register("softmax")
class NormSoftmaxLoss(ClassWeightLoss):
    """Cross-entropy over cosine logits with temperature T = `temperature` (--loss_softmax_temperature):

        L = mean_i -log softmax_c( cos(x_i, w_c) / T )_{y_i}

    with class weights W in R^{C x D} (ClassWeightLoss) trained at `lr` (--loss_softmax_lr, an absolute lr,
    without weight decay, also inside S2SD where the reference used --lr). The embedding is
    L2-normalised as in the paper; the reference used it as given (the same on `_normalize` archs).
    Never degenerate; `last_tuple_count` is the batch size.
    """

    FLAGS = (
        flag("--loss_softmax_lr", param="lr", default=0.00001, type=Bounded(float, ge=0)),
        flag("--loss_softmax_temperature", param="temperature", default=0.05, type=Bounded(float, gt=0)),
    )

    def __init__(self, n_classes: int, embed_dim: int, lr: float = 0.00001, temperature: float = 0.05):
        super().__init__(n_classes, embed_dim, lr)
        self.temperature = temperature

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        logits = self.cosines(batch)
        self.record(len(labels))
        return F.cross_entropy(logits / self.temperature, labels)
