"""Checkpoint files, written atomically: a temporary file in the same folder, then a rename."""
from __future__ import annotations

import os
import tempfile

import torch

from utilities.errors import UsageError


def save_atomic(state: dict, path: str) -> None:
    """torch.save to a temporary file next to `path`, then os.replace: a kill mid-write keeps the old file."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pth", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_cpu(path: str):
    """torch.load on the CPU, tensors and plain values only (no code is unpickled); a file that cannot be
    read is a UsageError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise UsageError(f"--checkpoint {path}: cannot read it ({type(err).__name__}: {str(err).splitlines()[0]})") from None
