"""GoogLeNet (Szegedy et al. 2015, Inception v1) from torchvision, F = 1024.

The trunk ends after inception5b; torchvision's auxiliary classifiers and `fc` are not used (the reference
returned torchvision's bare logits, which nothing downstream could read, REFERENCE.md §6.18). torchvision's
ImageNet weights were trained on inputs in [-1, 1]; with `transform_input` the model maps ImageNet-normalised
input there itself, so the data side uses the ImageNet convention. Crop 227, as in the reference.
"""
from __future__ import annotations

import torch.nn as nn
from torchvision.models import GoogLeNet

from architectures import INPUTS, REGISTRY, ArchSpec
from architectures.base import EmbeddingNetwork
from architectures.inputs import IMAGENET, InputConvention
from architectures.pretrained import find_weights, load_matching, load_state_dict

WEIGHT_FILES = ["googlenet-1378be20.pth"]
FEATURE_DIM = 1024
LAYERS = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
          "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
          "inception5a", "inception5b")


class GoogLeNetTrunk(nn.Module):
    """A torchvision GoogLeNet without pooling, dropout and classifiers: images -> B x 1024 x h x w."""

    def __init__(self, net: GoogLeNet):
        super().__init__()
        self.transform_input = net.transform_input
        for name in LAYERS:
            setattr(self, name, getattr(net, name))

    def forward(self, x):
        x = GoogLeNet._transform_input(self, x)
        for name in LAYERS:
            x = getattr(self, name)(x)
        return x


def load_imagenet(net: GoogLeNet, path: str, arch: str) -> None:
    """Load torchvision's GoogLeNet weights; the auxiliary classifiers are dropped, every other key must match."""
    state = {k: v for k, v in load_state_dict(path).items() if not k.startswith(("aux1.", "aux2."))}
    load_matching(net, state, path, arch)


@INPUTS.register("googlenet")
def inputs(spec: ArchSpec) -> InputConvention:
    """ImageNet mean and std (the model rescales to [-1, 1] itself), 227 crop."""
    return InputConvention(mean=IMAGENET.mean, std=IMAGENET.std, crop=227)


@REGISTRY.register("googlenet")
def googlenet(spec: ArchSpec, opt) -> EmbeddingNetwork:
    """GoogLeNet, F = 1024; torchvision's ImageNet weights from the torch cache or --pretrained_path."""
    path = find_weights(spec.name, WEIGHT_FILES, opt)
    net = GoogLeNet(aux_logits=False, transform_input=True, init_weights=path is None)
    if path is not None:
        load_imagenet(net, path, spec.name)
    return EmbeddingNetwork(GoogLeNetTrunk(net), FEATURE_DIM, opt.embed_dim, normalize=spec.normalize,
                            double=spec.double, frozen=spec.frozen, name=spec.name)
