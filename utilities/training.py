"""One training epoch: batches -> backbone -> criterion -> backward -> optimizer step.

An epoch can stop between two steps when `should_stop()` says so (a SIGTERM, utilities/preemption.py) and be
continued later from that step: `EpochProgress` is how far it came, and what its statistics are made of.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
from tqdm import tqdm

from utilities import distributed
from utilities.errors import TrainingDiverged
from utilities.precision import Precision
from utilities.seeding import random_states_kept

#: On CUDA the loss is read (a host synchronisation) every this many steps and at the end of the epoch.
CUDA_CHECK_EVERY = 25


@dataclass
class EpochProgress:
    """The first `step` steps of an epoch are done: the running sums of their loss, loss terms and degenerate
    steps, the seconds they took, and the states of the batch sampler and of the loader's generator at the
    start of the epoch (from which the epoch's batches, and the seeds of its workers or its batch-wise
    augmentations, are drawn again). A storage sampler's state holds its embedding storage as the epoch began,
    from which the epoch's batches were chosen; `storage_state` is that storage where the epoch stopped, after
    the updates of its steps."""

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
        """An epoch of the training loader `loader` (a DataLoader, or one of datasets/loading.py's loaders,
        all with `batch_sampler` and `generator`) about to start (before its iterator is made)."""
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


def check_interval(device) -> int:
    """Steps between two reads of the device (the NaN check; under several processes the stop agreement):
    every step on the CPU, where reading costs nothing, `CUDA_CHECK_EVERY` on CUDA."""
    return CUDA_CHECK_EVERY if torch.device(device).type == "cuda" else 1


class DivergenceMonitor:
    """Watches the loss on the device: remembers the first step whose loss is not finite, with its loss and
    terms, without reading anything back; `check` reads it (one synchronisation) and raises."""

    def __init__(self, device):
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.values: Optional[torch.Tensor] = None
        self.names: List[str] = []

    def record(self, step: int, loss: torch.Tensor, terms: Dict[str, torch.Tensor]) -> None:
        values = torch.stack([t.detach().float().reshape(()) for t in (loss, *terms.values())])
        if self.values is None or list(terms) != self.names:
            self.values, self.names = torch.zeros_like(values), list(terms)
        new = ~torch.isfinite(values[0]) & (self.first_bad < 0)
        self.first_bad = torch.where(new, torch.full_like(self.first_bad, step), self.first_bad)
        self.values = torch.where(new, values, self.values)

    def check(self, epoch: int) -> None:
        """Raise `TrainingDiverged` when a step's loss was not finite; under several processes a collective
        (every process checks at the same steps), so all of them stop when any one has seen it."""
        step = int(self.first_bad)
        if not distributed.any_rank(step >= 0):
            return
        if step < 0:
            raise TrainingDiverged(f"the loss became non-finite on another process in epoch {epoch + 1}")
        loss, *terms = self.values.tolist()
        detail = ", ".join(f"{name} {value:.4g}" for name, value in zip(self.names, terms))
        raise TrainingDiverged(f"loss became {loss} at epoch {epoch + 1}, step {step + 1}"
                               + (f" ({detail})" if detail else ""))


def train_one_epoch(model, criterion, optimizer, loader, device, epoch: int,
                    progress: Optional[EpochProgress] = None,
                    should_stop: Callable[[], bool] = lambda: False, *,
                    precision: Optional[Precision] = None, check_every: Optional[int] = None,
                    step: Optional[nn.Module] = None) -> Dict[str, float]:
    """Train for one pass of the batch sampler; returns the mean loss, the mean of each logged loss term,
    the number of degenerate steps (no active tuple) and the seconds taken.

    A storage sampler's embedding storage (datasets/embedding_storage.py) is updated after each forward pass
    with the batch's detached embeddings at its dataset indices: no extra forward pass.

    Nothing is read back to the host inside a step: the loss, its terms and the degenerate count are summed
    on the device, and the NaN/inf check (`DivergenceMonitor`) is read every `check_every` steps (default:
    every step on the CPU, where reading costs nothing and a bad step is never taken; every
    `CUDA_CHECK_EVERY` on CUDA, where the steps between a bad one and its check are taken, and their weights
    are never saved), at the end of the epoch and before the epoch stops early. The backbone runs under
    `precision` (fp32 by default). `step` is what computes the loss of a batch: `TrainingStep(model, criterion,
    precision)` by default; under several processes the DistributedDataParallel around it
    (utilities/distributed.py), whose backward averages the gradients across the processes.

    `progress` (`EpochProgress.starting(loader)` for a new epoch that may be stopped) continues an epoch from
    its step `progress.step` (a resumed run: the sampler and the loader's generator are back at their
    epoch-start states, the other random states where the epoch stopped). The skipped batches are drawn
    again and dropped, so DataLoader workers and batch-wise augmentations consume the same random numbers as
    in the uninterrupted epoch; the main process's random states are kept across that replay. A storage
    sampler chooses the epoch's batches again from its storage as the epoch began (in `sampler_state`), then
    gets back `progress.storage_state`. `should_stop()` is asked after each step; when it says yes, the
    divergence check is read (a diverged state is never handed on to be saved) and `EpochInterrupted`
    carries the progress so far.
    """
    device = torch.device(device)
    precision = precision or Precision(device)
    check_every = check_every or check_interval(device)
    model.train()
    criterion.train()
    step = step or TrainingStep(model, criterion, precision)
    progress = progress or EpochProgress()
    start = time.time() - progress.seconds
    storage = embedding_storage(loader)
    batches = iter(loader)
    with random_states_kept():
        for _ in range(progress.step):
            next(batches)
    if storage is not None and progress.storage_state is not None:
        storage.load_state_dict(progress.storage_state)
    loss_sum = torch.tensor(progress.loss_sum, dtype=torch.float64, device=device)
    degenerate = torch.tensor(progress.degenerate, dtype=torch.long, device=device)
    monitor = DivergenceMonitor(device)
    bar = tqdm(batches, total=len(loader), initial=progress.step, desc=f"Epoch {epoch + 1} Training", leave=False,
               disable=None if distributed.current().is_main else True)  # a bar only on rank 0's terminal
    for labels, images, indices in bar:
        images = precision.prepare_images(images.to(device, non_blocking=True))
        labels = labels.to(device, non_blocking=True)
        loss, embeds = step(images, labels)
        if storage is not None:
            storage.update(indices, embeds)
        terms = getattr(criterion, "last_terms", {})
        monitor.record(progress.step, loss, terms)
        if (progress.step + 1) % check_every == 0:
            monitor.check(epoch)
            bar.set_postfix(loss=f"{float(loss_sum + loss.detach()) / (progress.step + 1):.4f}", refresh=False)
        precision.backward_and_step(loss, optimizer)

        loss_sum += loss.detach().double()
        progress.step += 1
        for key, term in terms.items():
            progress.term_sums[key] = progress.term_sums.get(key, 0.0) + term
        if criterion.last_tuple_count is not None:
            degenerate += (criterion.last_tuple_count == 0).long()
        if should_stop() and progress.step < len(loader):
            bar.close()
            monitor.check(epoch)
            progress.loss_sum, progress.degenerate = float(loss_sum), int(degenerate)
            progress.seconds = time.time() - start
            progress.storage_state = storage.state_dict() if storage is not None else None
            raise EpochInterrupted(progress)
    monitor.check(epoch)
    steps = progress.step
    stats = {"loss": float(loss_sum) / max(steps, 1)}
    stats.update({k: float(v) / steps for k, v in progress.term_sums.items()})
    stats["degenerate_steps"] = int(degenerate)
    stats["seconds"] = time.time() - start
    return stats


def embedding_storage(loader):
    """The EmbeddingStorage that `loader`'s batch sampler reads (datasets/samplers/storage_based.py), or None
    (any other sampler; `loader` may be any iterable)."""
    return getattr(getattr(loader, "batch_sampler", None), "storage", None)


class TrainingStep(nn.Module):
    """images, labels -> (loss, the detached embeddings): the backbone under `precision`, then the criterion
    in fp32 (the embeddings feed a storage sampler's embedding storage).

    One module holds the backbone and the criterion so that DistributedDataParallel wraps both (the S2SD
    heads, margin betas and proxies train too) with one gradient all-reduce (utilities/distributed.py).
    With `global_batch` the criterion sees the global batch (`Criterion.global_loss`, gathers across the
    processes), its random draws coming from `randomness` (a context shared alike by every process); without,
    it is called on the process's batch as in a plain run.
    """

    def __init__(self, model: nn.Module, criterion: nn.Module, precision: Optional[Precision] = None,
                 global_batch: bool = False, randomness=None):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.precision = precision or Precision(next(model.parameters()).device)
        self.global_batch = global_batch
        self.randomness = randomness or contextlib.nullcontext

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            out = self.model(images)
        loss_of = self.criterion.global_loss if self.global_batch else self.criterion
        with self.randomness():
            loss = loss_of(out["embeds"], labels, avg_batch_features=out["avg_features"],
                           batch_features=out["features"])
        return loss, out["embeds"].detach()
