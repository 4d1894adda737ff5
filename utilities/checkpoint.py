"""Checkpoint files, written atomically: a temporary file in the same folder, then a rename."""
from __future__ import annotations

import os
import tempfile

import torch


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
