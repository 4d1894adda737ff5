"""Checkpoint files, written atomically (a temporary file in the same folder, then a rename) and read safely."""
from __future__ import annotations

import os
import tempfile
from typing import Optional

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


#: What the line says of a file that torch cannot load as tensors and plain values.
NOT_A_CHECKPOINT = "not a checkpoint this program wrote, or a damaged one"


def load_cpu(path: str, name: Optional[str] = None, remedy: str = NOT_A_CHECKPOINT):
    """torch.load on the CPU with weights_only=True (tensors and plain values: no code is unpickled). A file that
    cannot be read, or is not such a file (text, a truncated download, a pickle with code), is one line: `name`
    (default `--checkpoint <path>`) and `remedy`, what it is not and what to pass instead."""
    name = name or f"--checkpoint {path}"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise UsageError(f"{name}: cannot read it ({err.strerror or err})") from None
    except Exception:  # torch raises several types for foreign, damaged or code-carrying files
        raise UsageError(f"{name}: {remedy}") from None
