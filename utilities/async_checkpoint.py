"""Checkpoints written by a background thread, from a snapshot, so training does not wait for the disk.

`CheckpointWriter.save(state, path)` copies every tensor of `state` to the CPU and every container (dicts,
lists, tuples) at once, in the calling thread, so the training that goes on cannot change what is written,
and then hands the copy to one writer thread, which writes it with `save_atomic` (temporary file, fsync,
rename). Writes happen in the order they were asked for. `wait()` blocks until every write asked for so
far is on disk and re-raises the first error a write met (a full disk, say); a run calls it before the
checkpoints of each epoch, so at most one epoch's checkpoints are in flight, and before it ends.

A kill while a write is in flight keeps the previous file (the write is atomic); the resumed run then
replays from that earlier checkpoint.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import List

import torch

from utilities.checkpoint import save_atomic


def snapshot(value):
    """A copy of `value` that shares no tensor or container with it; tensors end up on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return type(value)((k, snapshot(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(v) for v in value)
    return value


class CheckpointWriter:
    """One background thread that writes snapshots in order."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending: List[Future] = []

    def save(self, state: dict, path: str) -> None:
        """Snapshot `state` now and write it to `path` in the background."""
        self._pending.append(self._pool.submit(save_atomic, snapshot(state), path))

    def wait(self) -> None:
        """Block until every write asked for is done; re-raise the first error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
