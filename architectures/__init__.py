"""Backbones: `select(arch, opt)` builds `<family>[_frozen][_normalize][_double][:<model name>]`.

Every backbone is an `EmbeddingNetwork` (architectures/base.py): forward returns
`{"embeds": B x D, "avg_features": B x F, "features": B x F x h x w}` and it has `feature_dim` = F.
Modifiers are parsed once here, never by substring tests elsewhere:

* `frozen`: BatchNorm layers keep their (ImageNet) running statistics, also under `model.train()`;
* `normalize`: the embedding is L2-normalised;
* `double`: pooled features are global average + global max pooling.

Families that wrap a library of models (`timm`) take the model name after a colon, verbatim:
`timm_frozen_normalize:convnext_tiny`. The modifiers belong to the family part before the colon, so a
model name is never cut at an underscore, whatever it ends with.

Each family also declares its input convention (`INPUTS`, see architectures/inputs.py), which
`datasets.select` reads through `input_convention(arch)`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import FrozenSet, Optional, Set

from architectures.inputs import InputConvention
from utilities.errors import UsageError
from utilities.registry import Registry

REGISTRY: Registry = Registry("architecture", "--arch")
#: family name -> (ArchSpec -> InputConvention)
INPUTS: Registry = Registry("input convention", "--arch")
#: families whose name is followed by `:<model name>`
TAKES_MODEL_NAME: Set[str] = set()
MODIFIERS = ("frozen", "normalize", "double")


@dataclass(frozen=True)
class ArchSpec:
    """A parsed `--arch` string: the registered family name, its modifiers and, for library families
    such as timm, the model name after the colon."""

    name: str
    modifiers: FrozenSet[str]
    model_name: str = ""

    @property
    def frozen(self) -> bool:
        return "frozen" in self.modifiers

    @property
    def normalize(self) -> bool:
        return "normalize" in self.modifiers

    @property
    def double(self) -> bool:
        return "double" in self.modifiers


def parse_arch(arch: str) -> ArchSpec:
    """Split `arch` into a registered family, its modifiers (trailing `_frozen`, `_normalize`, `_double` in
    any order) and, after a colon, the model name of a library family."""
    family, colon, model_name = arch.partition(":")
    tokens = family.split("_")
    modifiers = []
    while len(tokens) > 1 and tokens[-1] in MODIFIERS:
        modifiers.append(tokens.pop())
    name = "_".join(tokens)
    if name not in REGISTRY:
        raise UsageError(
            f"--arch: unknown architecture '{name}' (from '{arch}'); choose one of: {', '.join(sorted(REGISTRY))}, "
            f"optionally followed by _{'/_'.join(MODIFIERS)}"
        )
    if len(set(modifiers)) != len(modifiers):
        raise UsageError(f"--arch {arch}: a modifier is repeated")
    if name in TAKES_MODEL_NAME and not model_name:
        raise UsageError(
            f"--arch {arch}: {name} needs a model name after a colon, modifiers before it: "
            f"{name}[_{'][_'.join(MODIFIERS)}]:<model name>, e.g. {name}_frozen_normalize:resnet50"
        )
    if name not in TAKES_MODEL_NAME and colon:
        raise UsageError(f"--arch {arch}: '{name}' takes no ':<model name>'")
    return ArchSpec(name, frozenset(modifiers), model_name)


def input_convention(arch: str) -> InputConvention:
    """The input convention (scale, channel order, mean, std, size) of the backbone named by `arch`."""
    spec = parse_arch(arch)
    return INPUTS.lookup(spec.name)(spec)


def select(arch: str, opt):
    """Build the backbone named by `arch` with the embedding size `opt.embed_dim` (the CLI's path: a family
    reads --embed_dim, --not_pretrained and --pretrained_path)."""
    spec = parse_arch(arch)
    return REGISTRY[spec.name](spec, opt)


def create(arch: str, *, embed_dim: int = 128, pretrained: bool = True, pretrained_path: Optional[str] = None):
    """The backbone named by `arch`, from Python: `select` with these three settings and no other flag.
    Pretrained weights come from `pretrained_path` or the local caches (architectures/pretrained.py)."""
    settings = argparse.Namespace(embed_dim=embed_dim, not_pretrained=not pretrained, pretrained_path=pretrained_path)
    return select(arch, settings)


# Importing the family modules fills REGISTRY and INPUTS.
from architectures import bninception, efficientnet_lite, googlenet, resnet, timm_models  # noqa: E402,F401
from architectures.base import EmbeddingNetwork  # noqa: E402,F401
