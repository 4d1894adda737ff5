"""ArcFace (Deng, Guo, Xue & Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
CVPR 2019)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import Criterion


@REGISTRY.register("arcface")
class ArcFaceLoss(Criterion):
    """With cos_ic = cos(x_i, w_c), theta_i = arccos(cos_{i,y_i}), margin m and scale s:

        logit_ic = s cos_ic                 for c != y_i
        logit_iy = s cos(theta_i + m)       if theta_i <= pi - m, else s (cos_iy - m sin m)
        L = mean_i cross-entropy(logit_i, y_i)

    m = --loss_arcface_angular_margin (radians), s = --loss_arcface_feature_scale. The second branch keeps the
    target logit decreasing in theta beyond pi - m (the paper's reference implementation). Class weights
    W in R^{C x D} start U(-1/sqrt(D), 1/sqrt(D)) and train at --loss_arcface_lr without weight decay, also
    inside S2SD.

    Differs from the reference code: it added the margin correction to every logit of a row (a constant
    shift that leaves the softmax unchanged, so the margin had no effect) and clamped cosines at >= 1e-10;
    here the margin moves the target logit only and cosines keep their sign. Embeddings are L2-normalised as
    in the paper. Never degenerate; `last_tuple_count` is the batch size.
    """

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, batchminer, embed_dim)
        bound = 1.0 / math.sqrt(self.embed_dim)
        self.class_weights = nn.Parameter(torch.empty(opt.n_classes, self.embed_dim).uniform_(-bound, bound))
        self.margin = opt.loss_arcface_angular_margin
        self.scale = opt.loss_arcface_feature_scale
        self.lr = opt.loss_arcface_lr

    def param_groups(self):
        return [{"params": [self.class_weights], "lr": self.lr, "weight_decay": 0.0, "name": "arcface_weights"}]

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        cos = F.normalize(batch, dim=1) @ F.normalize(self.class_weights, dim=1).T
        target = cos.gather(1, labels[:, None])
        theta = torch.acos(target.clamp(-1.0 + 1e-7, 1.0 - 1e-7))
        margined = torch.where(theta <= math.pi - self.margin, torch.cos(theta + self.margin),
                               target - self.margin * math.sin(self.margin))
        logits = cos.scatter(1, labels[:, None], margined)
        self.record(len(labels))
        return F.cross_entropy(self.scale * logits, labels)
