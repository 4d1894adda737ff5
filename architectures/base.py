"""The embedding network shared by every backbone: trunk -> pooling -> `last_linear` -> (L2-normalise)."""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F


class EmbeddingNetwork(nn.Module):
    """Wraps a convolutional trunk (images -> B x F x h x w feature map) into a DML embedding model.

    forward(x) returns
      * `features`: the trunk's feature map X (B x F x h x w);
      * `avg_features`: y = GAP(X), or GAP(X) + GMP(X) with `double` (B x F);
      * `embeds`: z = last_linear(y) (B x D), divided by ||z||_2 with `normalize`.

    With `frozen`, every BatchNorm layer stays in eval mode (its running statistics are not updated) even
    under `train()`; its affine parameters still train, as in the reference.

    Under mixed precision (`--amp`, utilities/precision.py) only the trunk runs under autocast: the feature
    map is cast to fp32 and everything after it (pooling, `last_linear`, normalisation) runs with autocast
    switched off, so every output is fp32. Without autocast both steps change nothing.
    """

    def __init__(self, trunk: nn.Module, feature_dim: int, embed_dim: int, *, normalize: bool, double: bool,
                 frozen: bool, name: str):
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.embed_dim = embed_dim
        self.normalize = normalize
        self.double = double
        self.frozen = frozen
        self.name = name
        self.last_linear = nn.Linear(feature_dim, embed_dim)
        self.train()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        features = self.trunk(x)
        with torch.autocast(features.device.type, enabled=False):
            return self.head(features.float())

    def head(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        pooled = F.adaptive_avg_pool2d(features, 1).flatten(1)
        if self.double:
            pooled = pooled + F.adaptive_max_pool2d(features, 1).flatten(1)
        embeds = self.last_linear(pooled)
        if self.normalize:
            embeds = F.normalize(embeds, dim=-1)
        return {"embeds": embeds, "avg_features": pooled, "features": features}

    def param_groups(self, opt) -> List[dict]:
        """Optimizer groups: all weights at (--lr, --decay); with --fc_lr >= 0 the embedding layer at --fc_lr."""
        if opt.fc_lr < 0:
            return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": opt.lr,
                     "weight_decay": opt.decay, "name": "network"}]
        head = [p for p in self.last_linear.parameters() if p.requires_grad]
        head_ids = {id(p) for p in head}
        body = [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]
        return [
            {"params": body, "lr": opt.lr, "weight_decay": opt.decay, "name": "network"},
            {"params": head, "lr": opt.fc_lr, "weight_decay": opt.decay, "name": "last_linear"},
        ]
