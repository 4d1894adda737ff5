"""Checkpoint files, written atomically (a temporary file in the same folder, then a rename) and read safely."""
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


def load_safely(path: str, name: str, remedy: str):
    """torch.load on the CPU with weights_only=True (tensors and plain values: no code is unpickled). A file that
    cannot be read, or is not such a file (text, a truncated download, a pickle with code), is one line: `name`
    (the file, or the flag and the file) and `remedy`, what it is not and what to pass instead."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise UsageError(f"{name}: cannot read it ({err.strerror or err})") from None
    except Exception:  # torch raises several types for foreign, damaged or code-carrying files
        raise UsageError(f"{name}: {remedy}") from None
