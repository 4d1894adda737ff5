"""Any timm model (github.com/huggingface/pytorch-image-models) as a backbone, by its timm name:

    --arch timm[_frozen][_normalize][_double]:<timm model name>      e.g. timm_frozen_normalize:convnext_tiny

The modifiers come before the colon and the timm name after it, verbatim (with an optional pretrained tag,
`resnet50.a1_in1k`), so a name is never cut at an underscore. The trunk is the model's `forward_features`;
we pool its last feature map ourselves (EmbeddingNetwork), so F = `num_features`. Channels-last maps
(Swin) are moved to channels-first, and transformer tokens (B x N x F) become a map: prefix tokens (class,
register) are dropped and the N patch tokens are laid out as a sqrt(N) x sqrt(N) grid (N x 1 when N is not
square). `frozen` affects BatchNorm layers only (ViTs have none).

Pretrained weights are never downloaded: they come from --pretrained_path, the Hugging Face cache (as
left by an earlier `timm.create_model(name, pretrained=True)` or `huggingface-cli download timm/<name>`)
or timm's legacy file in the torch hub cache: the file is found locally first and handed to timm as
`pretrained_cfg_overlay={"file": path}`, so timm loads it without asking the hub, and the process's
environment is left as it is (no HF_HUB_OFFLINE). The input convention (mean, std, size, crop fraction) is the
model's `pretrained_cfg`.
"""
from __future__ import annotations

import math
import os
from typing import List
from urllib.parse import urlparse

import torch
import torch.nn as nn

from architectures import INPUTS, MODIFIERS, REGISTRY, TAKES_MODEL_NAME, ArchSpec
from architectures.base import EmbeddingNetwork
from architectures.inputs import IMAGENET, InputConvention
from architectures.pretrained import find_weights
from utilities.errors import UsageError

TAKES_MODEL_NAME.add("timm")


def to_feature_map(x: torch.Tensor, feature_dim: int, prefix_tokens: int) -> torch.Tensor:
    """A timm `forward_features` output (B x F x h x w, B x h x w x F or B x N x F tokens) -> B x F x h x w."""
    if x.dim() == 4:
        return x if x.shape[1] == feature_dim else x.permute(0, 3, 1, 2)
    if x.dim() == 3:
        tokens = x[:, prefix_tokens:]
        n = tokens.shape[1]
        side = math.isqrt(n)
        grid = (side, side) if side * side == n else (n, 1)
        return tokens.transpose(1, 2).reshape(x.shape[0], feature_dim, *grid)
    raise ValueError(f"timm forward_features returned a {x.dim()}-d tensor; expected a feature map or tokens")


class TimmTrunk(nn.Module):
    """A timm model without its classifier: images -> B x F x h x w."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.feature_dim = model.num_features
        self.prefix_tokens = getattr(model, "num_prefix_tokens", 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_feature_map(self.model.forward_features(x), self.feature_dim, self.prefix_tokens)


def pretrained_cfg(spec: ArchSpec):
    """timm's pretrained configuration of the model (None when it has none); unknown names are a UsageError."""
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(spec.model_name):
        hint = " (modifiers go before the colon: timm_frozen_normalize:<name>)" \
            if spec.model_name.rsplit("_", 1)[-1] in MODIFIERS else " (list them with timm.list_models())"
        raise UsageError(f"--arch timm:{spec.model_name}: timm {timm.__version__} has no model '{spec.model_name}'{hint}")
    try:
        return get_pretrained_cfg(spec.model_name)
    except RuntimeError as err:  # an unknown pretrained tag
        raise UsageError(f"--arch timm:{spec.model_name}: {err}") from None


def cached_files(cfg) -> List[str]:
    """Weight files of `cfg` already in the Hugging Face cache (looked up locally, never fetched)."""
    from huggingface_hub import try_to_load_from_cache

    if cfg is None or not cfg.hf_hub_id:
        return []
    names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    found = [try_to_load_from_cache(cfg.hf_hub_id, name) for name in names]
    return [path for path in found if isinstance(path, str)]


@INPUTS.register("timm")
def inputs(spec: ArchSpec) -> InputConvention:
    """The model's pretrained_cfg: mean, std, input size; evaluation resizes to size / crop_pct."""
    cfg = pretrained_cfg(spec)
    if cfg is None:
        return IMAGENET
    crop = cfg.input_size[-1]
    return InputConvention(mean=tuple(cfg.mean), std=tuple(cfg.std), crop=crop, resize=int(math.floor(crop / cfg.crop_pct)))


@REGISTRY.register("timm")
def timm_model(spec: ArchSpec, opt) -> EmbeddingNetwork:
    """A timm model by name, F = its num_features."""
    import timm
    from huggingface_hub import constants

    cfg = pretrained_cfg(spec)
    arch = f"timm:{spec.model_name}"
    if cfg is None and not opt.not_pretrained and not opt.pretrained_path:
        raise UsageError(f"--arch {arch}: timm publishes no weights for this model; pass --pretrained_path FILE "
                         f"or --not_pretrained")
    file_names = [os.path.basename(urlparse(cfg.url).path)] if cfg is not None and cfg.url else []
    hub = f"put the Hugging Face download of {cfg.hf_hub_id} in {constants.HF_HUB_CACHE}" if cfg and cfg.hf_hub_id else ""
    path = find_weights(arch, file_names, opt, locations=cached_files(cfg), alternative=hub)
    try:
        model = timm.create_model(spec.model_name, pretrained=path is not None,
                                  pretrained_cfg_overlay={"file": path} if path else None)
    except Exception as err:  # timm's strict load (keys, shapes) or torch.load (not a weights file)
        if path is None:
            raise
        detail = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        raise UsageError(f"--arch {arch}: {path} does not fit this model or is not a weights file "
                         f"({type(err).__name__}: {detail[-1][:300]})") from None
    model.reset_classifier(0)
    trunk = TimmTrunk(model)
    return EmbeddingNetwork(trunk, trunk.feature_dim, opt.embed_dim, normalize=spec.normalize, double=spec.double,
                            frozen=spec.frozen, name=spec.name)
