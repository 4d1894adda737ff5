"""Atomic outputs: written under a hidden temporary name next to the target, renamed into place when complete.

A kill at any moment leaves the target as it was (absent, or the complete previous version) and at most a
hidden `.<name>.partial-*` entry, which the next write to the same target removes.
"""
from __future__ import annotations

import glob
import os
import shutil
import uuid
from contextlib import contextmanager


def _partial_prefix(target: str) -> str:
    target = os.path.abspath(target)
    return os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.partial-")


def partial_name(target: str) -> str:
    """A fresh hidden name in `target`'s folder (created if missing); stale ones of earlier writes are removed."""
    prefix = _partial_prefix(target)
    for stale in glob.glob(prefix + "*"):
        if os.path.isdir(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.remove(stale)
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


@contextmanager
def written_file(target: str):
    """Yield a temporary path to write; on success it replaces `target`, on any exception it is removed."""
    tmp = partial_name(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        _remove(tmp)


@contextmanager
def written_folder(target: str):
    """Yield an empty temporary folder to fill; on success it replaces the folder `target` (an older one is
    moved aside, then deleted), on any exception it is removed."""
    tmp = partial_name(target)
    os.mkdir(tmp)
    try:
        yield tmp
        if os.path.exists(target):
            old = f"{tmp}-previous"
            os.rename(target, old)
            os.rename(tmp, target)
            _remove(old)
        else:
            os.rename(tmp, target)
    finally:
        _remove(tmp)
