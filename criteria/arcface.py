"""ArcFace (Deng, Guo, Xue & Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
CVPR 2019)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import ClassWeightLoss
from utilities.flags import Bounded, flag


@REGISTRY.register("arcface")
class ArcFaceLoss(ClassWeightLoss):
    """With cos_ic = cos(x_i, w_c), theta_i = arccos(cos_{i,y_i}), margin m and scale s:

        logit_ic = s cos_ic                 for c != y_i
        logit_iy = s cos(theta_i + m)       if theta_i <= pi - m, else s (cos_iy - m sin m)
        L = mean_i cross-entropy(logit_i, y_i)

    m = `angular_margin` (--loss_arcface_angular_margin, radians), s = `feature_scale`
    (--loss_arcface_feature_scale). The second branch keeps the target logit decreasing in theta beyond
    pi - m (the paper's reference implementation). Class weights W in R^{C x D} (ClassWeightLoss) train at
    `lr` (--loss_arcface_lr) without weight decay, also inside S2SD.

    Differs from the reference code: it added the margin correction to every logit of a row (a constant
    shift that leaves the softmax unchanged, so the margin had no effect) and clamped cosines at >= 1e-10;
    here the margin moves the target logit only and cosines keep their sign. Embeddings are L2-normalised as
    in the paper. Never degenerate; `last_tuple_count` is the batch size.
    """

    FLAGS = (
        flag("--loss_arcface_lr", param="lr", default=0.0005, type=Bounded(float, ge=0)),
        flag("--loss_arcface_angular_margin", param="angular_margin", default=0.5,
             type=Bounded(float, ge=0, lt=math.pi)),
        flag("--loss_arcface_feature_scale", param="feature_scale", default=16, type=Bounded(float, gt=0)),
    )

    def __init__(self, n_classes: int, embed_dim: int, lr: float = 0.0005, angular_margin: float = 0.5,
                 feature_scale: float = 16):
        super().__init__(n_classes, embed_dim, lr)
        self.margin = angular_margin
        self.scale = feature_scale

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        cos = self.cosines(batch)
        target = cos.gather(1, labels[:, None])
        theta = torch.acos(target.clamp(-1.0 + 1e-7, 1.0 - 1e-7))
        margined = torch.where(theta <= math.pi - self.margin, torch.cos(theta + self.margin),
                               target - self.margin * math.sin(self.margin))
        logits = cos.scatter(1, labels[:, None], margined)
        self.record(len(labels))
        return F.cross_entropy(self.scale * logits, labels)
