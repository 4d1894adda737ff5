"""Backbones: `select(arch, opt)` builds `<name>[_frozen][_normalize][_double]`.

Every backbone is an `EmbeddingNetwork` (architectures/base.py): forward returns
`{"embeds": B x D, "avg_features": B x F, "features": B x F x h x w}` and it has `feature_dim` = F.
Modifiers are parsed once here, never by substring tests elsewhere:

* `frozen`: BatchNorm layers keep their (ImageNet) running statistics, also under `model.train()`;
* `normalize`: the embedding is L2-normalised;
* `double`: pooled features are global average + global max pooling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet

from utilities.errors import UsageError
from utilities.registry import Registry

REGISTRY: Registry = Registry("architecture", "--arch")
MODIFIERS = ("frozen", "normalize", "double")


@dataclass(frozen=True)
class ArchSpec:
    """A parsed `--arch` string: the registered family name and its modifiers."""

    name: str
    modifiers: FrozenSet[str]

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
    """Split `arch` into a registered name and modifiers: trailing `_frozen`, `_normalize`, `_double` in any order."""
    tokens = arch.split("_")
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
    return ArchSpec(name, frozenset(modifiers))


def select(arch: str, opt):
    """Build the backbone named by `arch` with the embedding size `opt.embed_dim`."""
    spec = parse_arch(arch)
    return REGISTRY[spec.name](spec, opt)


# Importing the family modules fills REGISTRY.
from architectures import resnet  # noqa: E402,F401
