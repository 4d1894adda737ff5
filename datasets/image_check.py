"""Which image files decode, checked once before a run: every image is decoded in full, in parallel threads,
and the verdict is cached by path, modification time and size, so a second run over the same files pays a
`stat` per file and nothing else.

Reading only the header misses a file cut short (a truncated JPEG has a valid header and fails in the
middle of a training epoch, in a DataLoader worker). Decoding in full finds it before anything is built,
so the file is skipped with a warning naming it, as an unreadable one is.

The cache is one JSON file per image folder tree in `$S2SD_CACHE_DIR`, else `$XDG_CACHE_HOME/s2sd`, else
`~/.cache/s2sd`; it is only an accelerator: when it cannot be read or written the check runs in full.
Decoding releases the GIL inside Pillow, so threads decode in parallel.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

from PIL import Image

CACHE_FORMAT = 1


def cache_dir() -> str:
    if os.environ.get("S2SD_CACHE_DIR"):
        return os.environ["S2SD_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "s2sd")


def decode_problem(path: str) -> str:
    """'' if Pillow decodes the whole image, else the reason it cannot."""
    try:
        with Image.open(path) as image:
            image.load()
        return ""
    except Exception as err:  # Pillow raises many types for broken, foreign or oversized files
        return f"{type(err).__name__}: {err}"


def _cache_path(paths: Sequence[str]) -> str:
    root = os.path.commonpath([os.path.abspath(p) for p in paths])
    return os.path.join(cache_dir(), f"decode_check_{hashlib.sha1(root.encode()).hexdigest()[:16]}.json")


def _read_cache(path: str) -> Dict[str, list]:
    try:
        with open(path) as f:
            cached = json.load(f)
        return cached["files"] if cached.get("format") == CACHE_FORMAT else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write_cache(path: str, files: Dict[str, list]) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=os.path.dirname(path))
        with os.fdopen(fd, "w") as f:
            json.dump({"format": CACHE_FORMAT, "files": files}, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs the next run the full check


def _signature(path: str) -> Optional[list]:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_mtime_ns, stat.st_size]


def decode_problems(paths: Sequence[str], workers: Optional[int] = None) -> List[str]:
    """For each file of `paths`, '' if it decodes in full, else the reason; cached verdicts are reused for
    files whose modification time and size are unchanged."""
    if not paths:
        return []
    cache_file = _cache_path(paths)
    cached = _read_cache(cache_file)
    signatures = [_signature(p) for p in paths]
    reasons: List[Optional[str]] = []
    for path, signature in zip(paths, signatures):
        entry = cached.get(os.path.abspath(path))
        reasons.append(entry[2] if signature is not None and entry is not None and entry[:2] == signature else None)
    todo = [i for i, reason in enumerate(reasons) if reason is None]
    if todo:
        with ThreadPoolExecutor(max_workers=workers or min(32, os.cpu_count() or 1)) as pool:
            for i, reason in zip(todo, pool.map(decode_problem, [paths[i] for i in todo])):
                reasons[i] = reason
        _write_cache(cache_file, {os.path.abspath(p): [*s, r] for p, s, r in zip(paths, signatures, reasons)
                                  if s is not None})
    return reasons
