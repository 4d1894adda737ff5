"""Device choice: `--device auto|cpu|cuda`, with `--gpu` keeping its reference meaning (the GPU id)."""
from __future__ import annotations

import warnings

import torch

from utilities.errors import UsageError


def resolve_device(opt) -> torch.device:
    """Return the torch device the run uses.

    `auto` takes CUDA when present. A `--gpu` given on a machine without CUDA falls back to the CPU with a
    warning (published commands pass `--gpu 0`); an explicit `--device cuda` without CUDA is an error.
    """
    gpu_ids = opt.gpu if opt.gpu is not None else [0]
    has_cuda = torch.cuda.is_available()
    if opt.device == "cpu":
        return torch.device("cpu")
    if opt.device == "cuda" and not has_cuda:
        raise UsageError("--device cuda: no CUDA device is available on this machine; use --device cpu")
    if has_cuda:
        if gpu_ids[0] >= torch.cuda.device_count():
            raise UsageError(
                f"--gpu {gpu_ids[0]}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return torch.device("cuda", gpu_ids[0])
    if opt.gpu is not None:
        warnings.warn(f"--gpu {' '.join(map(str, opt.gpu))}: no CUDA device is available; running on the CPU")
    return torch.device("cpu")
