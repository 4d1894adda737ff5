"""One training epoch: batches -> backbone -> criterion -> backward -> optimizer step.

An epoch can stop between two steps when `should_stop()` says so (a SIGTERM, utilities/preemption.py) and be
continued later from that step: `EpochProgress` is how far it came, and what its statistics are made of.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import torch
from tqdm import tqdm

from utilities.errors import TrainingDiverged
from utilities.seeding import random_states_kept


@dataclass
class EpochProgress:
    """The first `step` steps of an epoch are done: the running sums of their loss, loss terms and degenerate
    steps, the seconds they took, and the states of the batch sampler and of the loader's generator at the
    start of the epoch (from which the epoch's batches, and the seeds of its workers, are drawn again). A
    storage sampler's state holds its embedding storage as the epoch began, from which the epoch's batches
    were chosen; `storage_state` is that storage where the epoch stopped, after the updates of its steps."""

    step: int = 0
    loss_sum: float = 0.0
    term_sums: Dict[str, torch.Tensor] = field(default_factory=dict)
    degenerate: int = 0
    seconds: float = 0.0
    sampler_state: Optional[dict] = None
    loader_state: Optional[torch.Tensor] = None
    storage_state: Optional[dict] = None

    @classmethod
    def starting(cls, loader) -> "EpochProgress":
        """An epoch of the DataLoader `loader` about to start (before its iterator is made)."""
        return cls(sampler_state=loader.batch_sampler.state_dict(), loader_state=loader.generator.get_state())

    def counters(self) -> dict:
        """What a checkpoint stores besides the sampler and generator states (which it keeps in their own
        places): plain numbers and the storage's tensors, so it loads with `weights_only=True`."""
        return {"step": self.step, "loss_sum": self.loss_sum, "degenerate": self.degenerate, "seconds": self.seconds,
                "term_sums": {key: float(value) for key, value in self.term_sums.items()},
                "storage_state": self.storage_state}


class EpochInterrupted(Exception):
    """The epoch stopped between two steps at the caller's request; `progress` says where."""

    def __init__(self, progress: EpochProgress):
        super().__init__(f"stopped after step {progress.step}")
        self.progress = progress


def train_one_epoch(model, criterion, optimizer, loader, device, epoch: int,
                    progress: Optional[EpochProgress] = None,
                    should_stop: Callable[[], bool] = lambda: False) -> Dict[str, float]:
    """Train for one pass of the batch sampler; returns the mean loss, the mean of each logged loss term,
    the number of degenerate steps (no active tuple) and the seconds taken.

    A storage sampler's embedding storage (datasets/embedding_storage.py) is updated after each forward pass
    with the batch's detached embeddings at its dataset indices: no extra forward pass.

    The only host synchronisation per step is the loss value, read once for the progress bar and the NaN
    check; loss terms are summed on the device and read at the end of the epoch.

    `progress` (`EpochProgress.starting(loader)` for a new epoch that may be stopped) continues an epoch from
    its step `progress.step` (a resumed run: the sampler and the loader's generator are back at their
    epoch-start states, the other random states where the epoch stopped). The
    skipped batches are drawn again and dropped, so DataLoader workers consume the same random numbers as in
    the uninterrupted epoch; the main process's random states are kept across that replay. A storage
    sampler chooses the epoch's batches again from its storage as the epoch began (in `sampler_state`), then
    gets back `progress.storage_state`. `should_stop()` is asked between two steps; when it says yes,
    `EpochInterrupted` carries the progress so far.
    """
    model.train()
    criterion.train()
    progress = progress or EpochProgress()
    start = time.time() - progress.seconds
    storage = getattr(getattr(loader, "batch_sampler", None), "storage", None)  # `loader` may be any iterable
    batches = iter(loader)
    with random_states_kept():
        for _ in range(progress.step):
            next(batches)
    if storage is not None and progress.storage_state is not None:
        storage.load_state_dict(progress.storage_state)
    degenerate = torch.tensor(progress.degenerate, dtype=torch.long, device=device)
    bar = tqdm(batches, total=len(loader), initial=progress.step, desc=f"Epoch {epoch + 1} Training", leave=False,
               disable=None)  # a bar only on a terminal
    for labels, images, indices in bar:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        out = model(images)
        if storage is not None:
            storage.update(indices, out["embeds"].detach())
        loss = criterion(out["embeds"], labels, avg_batch_features=out["avg_features"], batch_features=out["features"])
        value = loss.item()
        terms = getattr(criterion, "last_terms", {})
        if not math.isfinite(value):
            detail = ", ".join(f"{k} {float(v):.4g}" for k, v in terms.items())
            raise TrainingDiverged(f"loss became {value} at epoch {epoch + 1}, step {progress.step + 1}"
                                   + (f" ({detail})" if detail else ""))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        progress.loss_sum += value
        progress.step += 1
        for key, term in terms.items():
            progress.term_sums[key] = progress.term_sums.get(key, 0.0) + term
        if criterion.last_tuple_count is not None:
            degenerate += (criterion.last_tuple_count == 0).long()
        bar.set_postfix(loss=f"{progress.loss_sum / progress.step:.4f}", refresh=False)
        if should_stop() and progress.step < len(loader):
            bar.close()
            progress.degenerate = int(degenerate)
            progress.seconds = time.time() - start
            progress.storage_state = storage.state_dict() if storage is not None else None
            raise EpochInterrupted(progress)
    steps = progress.step
    stats = {"loss": progress.loss_sum / max(steps, 1)}
    stats.update({k: float(v) / steps for k, v in progress.term_sums.items()})
    stats["degenerate_steps"] = int(degenerate)
    stats["seconds"] = time.time() - start
    return stats
