"""BN-Inception (Ioffe & Szegedy 2015, "Batch Normalization"), the second backbone of the DML literature.

The architecture is written here; its layer names are those of the published ImageNet state dict
`bn_inception-52deb4733.pth` (Cadene's pretrainedmodels port of Xiong's Caffe model), so the file loads key
for key. That file stores every BatchNorm vector as 1 x C (a PyTorch 0.1 artefact); the loader reshapes
those to C. The later re-upload `bn_inception-239d2248.pth` (plain C vectors) loads too.

Every convolution has a bias and is followed by BatchNorm (eps 1e-5) and ReLU. The trunk ends after
inception_5b (F = 1024, 7 x 7 at 224 px); the 1000-class `last_linear` of the file is dropped.
Input: BGR on a 0-255 scale minus the mean (104, 117, 128), std 1 (the port's published convention). The
reference code divided by 0.0039 instead of 1/255, a 0.5% larger scale; we use the published one.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from architectures import INPUTS, REGISTRY, ArchSpec
from architectures.base import EmbeddingNetwork
from architectures.inputs import InputConvention
from architectures.pretrained import find_weights, load_matching, load_state_dict

WEIGHT_FILES = ["bn_inception-52deb4733.pth", "bn_inception-239d2248.pth"]
FEATURE_DIM = 1024

#: Inception modules: (name, in, 1x1, 3x3 reduce, 3x3, double 3x3 reduce, double 3x3, pool, pool proj).
#: pool: "avg" (3x3, stride 1), "max" (3x3, stride 1) or "reduce" (3x3 max, stride 2; the two 3x3
#: branches then have stride 2 and there is neither a 1x1 branch nor a pool projection).
MODULES: List[Tuple[str, int, int, int, int, int, int, str, int]] = [
    ("3a", 192, 64, 64, 64, 64, 96, "avg", 32),
    ("3b", 256, 64, 64, 96, 64, 96, "avg", 64),
    ("3c", 320, 0, 128, 160, 64, 96, "reduce", 0),
    ("4a", 576, 224, 64, 96, 96, 128, "avg", 128),
    ("4b", 576, 192, 96, 128, 96, 128, "avg", 128),
    ("4c", 576, 160, 128, 160, 128, 160, "avg", 128),
    ("4d", 608, 96, 128, 192, 160, 192, "avg", 128),
    ("4e", 608, 0, 128, 192, 192, 256, "reduce", 0),
    ("5a", 1056, 352, 192, 320, 160, 224, "avg", 128),
    ("5b", 1024, 352, 192, 320, 192, 224, "max", 128),
]


class BNInceptionTrunk(nn.Module):
    """images -> B x 1024 x h x w. Layers are flat attributes named as in the published state dict:
    `<layer>` (conv) and `<layer>_bn`, e.g. `inception_4a_double_3x3_1` and `inception_4a_double_3x3_1_bn`."""

    def __init__(self):
        super().__init__()
        self._unit("conv1_7x7_s2", 3, 64, 7, stride=2)
        self._unit("conv2_3x3_reduce", 64, 64, 1)
        self._unit("conv2_3x3", 64, 192, 3)
        for name, cin, c1, r3, c3, rd, cd, pool, proj in MODULES:
            p = f"inception_{name}_"
            stride = 2 if pool == "reduce" else 1
            if c1:
                self._unit(p + "1x1", cin, c1, 1)
            self._unit(p + "3x3_reduce", cin, r3, 1)
            self._unit(p + "3x3", r3, c3, 3, stride=stride)
            self._unit(p + "double_3x3_reduce", cin, rd, 1)
            self._unit(p + "double_3x3_1", rd, cd, 3)
            self._unit(p + "double_3x3_2", cd, cd, 3, stride=stride)
            if proj:
                self._unit(p + "pool_proj", cin, proj, 1)

    def _unit(self, name: str, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        setattr(self, name, nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2))
        setattr(self, name + "_bn", nn.BatchNorm2d(cout, eps=1e-5))

    def _conv_bn_relu(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, name + "_bn")(getattr(self, name)(x)))

    def _inception(self, x: torch.Tensor, name: str, c1: int, pool: str, proj: int) -> torch.Tensor:
        p = f"inception_{name}_"
        branches = [self._conv_bn_relu(p + "1x1", x)] if c1 else []
        branches.append(self._conv_bn_relu(p + "3x3", self._conv_bn_relu(p + "3x3_reduce", x)))
        double = self._conv_bn_relu(p + "double_3x3_reduce", x)
        branches.append(self._conv_bn_relu(p + "double_3x3_2", self._conv_bn_relu(p + "double_3x3_1", double)))
        if pool == "avg":
            pooled = F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
        elif pool == "max":
            pooled = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
        else:
            pooled = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        branches.append(self._conv_bn_relu(p + "pool_proj", pooled) if proj else pooled)
        return torch.cat(branches, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self._conv_bn_relu("conv1_7x7_s2", x), 3, stride=2, ceil_mode=True)
        x = self._conv_bn_relu("conv2_3x3", self._conv_bn_relu("conv2_3x3_reduce", x))
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        for name, _, c1, _, _, _, _, pool, proj in MODULES:
            x = self._inception(x, name, c1, pool, proj)
        return x


def load_imagenet(trunk: BNInceptionTrunk, path: str, arch: str) -> None:
    """Load the published state dict key for key (its `last_linear` dropped, 1 x C BatchNorm vectors
    reshaped to C); a missing or unexpected key or a wrong shape is an error naming the file."""
    expected = trunk.state_dict()
    state = {}
    for key, value in load_state_dict(path).items():
        if key.startswith("last_linear."):
            continue
        if key in expected and value.dim() == 2 and value.shape[0] == 1 and expected[key].dim() == 1:
            value = value[0]
        state[key] = value
    load_matching(trunk, state, path, "bninception")


@INPUTS.register("bninception")
def inputs(spec: ArchSpec) -> InputConvention:
    """0-255 BGR minus (104, 117, 128), 224 crop."""
    return InputConvention(mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0), scale=255.0, bgr=True)


@REGISTRY.register("bninception")
def bninception(spec: ArchSpec, opt) -> EmbeddingNetwork:
    """BN-Inception, F = 1024; ImageNet weights from the torch cache or --pretrained_path."""
    trunk = BNInceptionTrunk()
    path = find_weights(spec.name, WEIGHT_FILES, opt)
    if path is not None:
        load_imagenet(trunk, path, spec.name)
    return EmbeddingNetwork(trunk, FEATURE_DIM, opt.embed_dim, normalize=spec.normalize, double=spec.double,
                            frozen=spec.frozen, name=spec.name)
