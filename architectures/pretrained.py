"""Where ImageNet weights come from: `--pretrained_path`, else the local torch hub cache. Nothing downloads."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch

from utilities.checkpoint import load_cpu
from utilities.errors import UsageError


def cache_dir() -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def find_weights(arch_name: str, file_names: Sequence[str], opt, locations: Sequence[str] = (),
                 alternative: str = "") -> Optional[str]:
    """Return the weight file to load, None for `--not_pretrained`, or raise the one-line "where to put it" error.

    Looked up in order: `--pretrained_path`; the published `file_names` (torchvision's, Cadene's, timm's)
    in the torch hub cache ($TORCH_HOME/hub/checkpoints); then `locations`, full paths of other local
    copies (a pip-installed weights package, the Hugging Face cache). `alternative` is a further way to
    get the file, named first in the error.
    """
    if opt.not_pretrained:
        return None
    if opt.pretrained_path:
        if not os.path.isfile(opt.pretrained_path):
            raise UsageError(f"--pretrained_path: no such file: {opt.pretrained_path}")
        return opt.pretrained_path
    candidates = [os.path.join(cache_dir(), name) for name in file_names] + list(locations)
    for path in candidates:
        if os.path.isfile(path):
            return path
    ways = [alternative] if alternative else []
    if file_names:
        ways.append(f"put {file_names[0]} in {cache_dir()}/")
    raise UsageError(
        f"--arch {arch_name}: ImageNet weights not found; {' or '.join(ways)}"
        f"{' or ' if ways else ''}pass --pretrained_path FILE, or pass --not_pretrained to train from scratch"
    )


def load_state_dict(path: str) -> dict:
    """Read a state dict saved either bare or under a 'state_dict'/'model' key; a file that is not one (text,
    a truncated download, a pickle with code) is one line naming it."""
    state = load_cpu(path, f"weights file {path}", "not a PyTorch state dict, or a damaged one; pass the backbone's "
                     "ImageNet weights (.pth) or --not_pretrained")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"weights file {path}: holds no state dict (name -> tensor); pass the backbone's ImageNet "
                         "weights (.pth) or --not_pretrained")
    return state


def load_matching(module: torch.nn.Module, state: dict, path: str, arch: str) -> None:
    """Load `state` into `module`, requiring every key and shape to match (BatchNorm batch counters, which
    files saved before PyTorch 0.4 lack, excepted); otherwise one line naming the file and the mismatches."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise UsageError(
            f"--arch {arch}: {path} is not a {arch} state dict ({len(missing)} missing keys, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}; {len(wrong)} of another shape, e.g. {wrong[:2]})"
        )
    module.load_state_dict(state, strict=False)
