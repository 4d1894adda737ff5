"""Where ImageNet weights come from: `--pretrained_path`, else the local torch hub cache. Nothing downloads."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch

from utilities.errors import UsageError


def cache_dir() -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def find_weights(arch_name: str, file_names: Sequence[str], opt) -> Optional[str]:
    """Return the weight file to load, None for `--not_pretrained`, or raise the one-line "where to put it" error.

    `file_names` are the published file names (torchvision's), looked up in the torch hub cache
    ($TORCH_HOME/hub/checkpoints).
    """
    if opt.not_pretrained:
        return None
    if opt.pretrained_path:
        if not os.path.isfile(opt.pretrained_path):
            raise UsageError(f"--pretrained_path: no such file: {opt.pretrained_path}")
        return opt.pretrained_path
    for name in file_names:
        path = os.path.join(cache_dir(), name)
        if os.path.isfile(path):
            return path
    raise UsageError(
        f"--arch {arch_name}: ImageNet weights not found; put {file_names[0]} in {cache_dir()}/ "
        f"or pass --pretrained_path FILE, or pass --not_pretrained to train from scratch"
    )


def load_state_dict(path: str) -> dict:
    """Read a state dict saved either bare or under a 'state_dict'/'model' key."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state
