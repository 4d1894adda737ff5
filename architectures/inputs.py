"""What a backbone expects as input: value scale, channel order, mean, std and image size.

Each architecture family declares its `InputConvention` next to its builder (`architectures.INPUTS`), and
`datasets.select` reads it through `architectures.input_convention(--arch)`, so no dataset code tests arch
names. A float image x in [0, 1] (RGB) becomes

    x' = (scale * x[channels] - mean) / std,     channels = RGB or BGR,

with mean and std given in the backbone's own channel order and value scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch


@dataclass(frozen=True)
class InputConvention:
    """`mean`/`std` in the model's channel order and scale; `crop` is the training/eval input size and
    `resize` the short side that evaluation resizes to before the centre crop."""

    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    scale: float = 1.0
    bgr: bool = False
    crop: int = 224
    resize: int = 256

    def normalizer(self) -> "Normalize":
        return Normalize(self)


class Normalize(torch.nn.Module):
    """3 x H x W float RGB in [0, 1] -> the backbone's input: scale, reorder channels, subtract, divide."""

    def __init__(self, convention: InputConvention):
        super().__init__()
        self.scale = convention.scale
        self.bgr = convention.bgr
        self.register_buffer("mean", torch.tensor(convention.mean, dtype=torch.float32).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(convention.std, dtype=torch.float32).view(3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale
        if self.bgr:
            x = x.flip(-3)
        return (x - self.mean) / self.std


#: torchvision's ImageNet models (ResNet, GoogLeNet) and most timm models.
IMAGENET = InputConvention(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
