"""ResNet family on torchvision: `resnet50` (the reference backbone), `resnet18`, and `slimresnet18`.

`slimresnet18` is the ResNet-18 layout at half width (32-64-128-256 channels, F = 256) for small inputs on
a CPU: about 0.13 s per training step at batch 112 on 32x32 images on 2 cores, against 0.55 s for
ResNet-18. It has no published ImageNet weights, so it always starts from scratch (`--not_pretrained`).
"""
from __future__ import annotations

import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from architectures import INPUTS, REGISTRY, ArchSpec
from architectures.base import EmbeddingNetwork
from architectures.inputs import IMAGENET
from architectures.pretrained import find_weights, load_matching, load_state_dict
from utilities.errors import UsageError


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its pooling and classifier: images -> feature map."""

    def __init__(self, resnet: ResNet):
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _load_imagenet(trunk: ResNetTrunk, path: str, arch: str) -> None:
    """Load torchvision (`fc.*`) or Cadene pretrainedmodels (`last_linear.*`) weights; the classifier is dropped."""
    state = {k: v for k, v in load_state_dict(path).items() if not k.startswith(("fc.", "last_linear."))}
    load_matching(trunk, state, path, arch)


def _build(spec: ArchSpec, opt, resnet: ResNet, feature_dim: int, weight_files) -> EmbeddingNetwork:
    trunk = ResNetTrunk(resnet)
    path = find_weights(spec.name, weight_files, opt)
    if path is not None:
        _load_imagenet(trunk, path, spec.name)
    return EmbeddingNetwork(trunk, feature_dim, opt.embed_dim, normalize=spec.normalize, double=spec.double,
                            frozen=spec.frozen, name=spec.name)


@INPUTS.register("resnet50")
@INPUTS.register("resnet18")
@INPUTS.register("slimresnet18")
def imagenet_inputs(spec: ArchSpec):
    """torchvision's ImageNet convention: RGB in [0, 1], ImageNet mean and std, 224 crop."""
    return IMAGENET


@REGISTRY.register("resnet50")
def resnet50(spec: ArchSpec, opt) -> EmbeddingNetwork:
    """ResNet-50 (He et al. 2016), F = 2048; ImageNet weights as published by torchvision (V1, 76.1% top-1)."""
    return _build(spec, opt, ResNet(Bottleneck, [3, 4, 6, 3]), 2048,
                  ["resnet50-0676ba61.pth", "resnet50-19c8e357.pth", "resnet50-11ad3fa6.pth"])


@REGISTRY.register("resnet18")
def resnet18(spec: ArchSpec, opt) -> EmbeddingNetwork:
    """ResNet-18, F = 512; ImageNet weights as published by torchvision."""
    return _build(spec, opt, ResNet(BasicBlock, [2, 2, 2, 2]), 512, ["resnet18-f37072fd.pth", "resnet18-5c106cde.pth"])


class _SlimResNet(ResNet):
    def __init__(self, width: int = 32):
        super().__init__(BasicBlock, [2, 2, 2, 2])
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(BasicBlock, width, 2)
        self.layer2 = self._make_layer(BasicBlock, 2 * width, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 4 * width, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 8 * width, 2, stride=2)
        self.fc = nn.Identity()


@REGISTRY.register("slimresnet18")
def slimresnet18(spec: ArchSpec, opt) -> EmbeddingNetwork:
    """Half-width ResNet-18 for CPU runs on small images (F = 256); random initialisation only."""
    if not opt.not_pretrained:
        raise UsageError("--arch slimresnet18 has no ImageNet weights; pass --not_pretrained to train it from scratch")
    return EmbeddingNetwork(ResNetTrunk(_SlimResNet()), 256, opt.embed_dim, normalize=spec.normalize,
                            double=spec.double, frozen=spec.frozen, name=spec.name)
