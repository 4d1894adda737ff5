"""Exact resumption with `--checkpoint`: what a `last` checkpoint holds, how it is found, and how a run is restored.

At the end of every `--checkpoint_every` epochs (default 1) and of the last one (after evaluation, logging,
the best checkpoints and the scheduler step), a run writes `<run>/checkpoint_last.pth.tar` atomically
(utilities/checkpoint.save_atomic), from a snapshot, in the background (utilities/async_checkpoint.py). When
the run is stopped by SIGTERM or SIGINT between two steps (utilities/preemption.py) it waits for that writer,
then writes the checkpoint of the step reached. It holds everything the rest of the run depends on:

* the model; the criterion (S2SD's target heads and their criteria, margin betas, proxies, and S2SD's
  iteration counter, a buffer); the optimizer; the scheduler;
* the batch sampler's generator (and a storage sampler's embedding storage), and the random states of
  Python, numpy, torch (CPU and CUDA) and of the training loader's own generator: the one the loader seeds
  its workers (or, on CUDA, each batch) from, or with the decoded-image store the one every batch-wise
  augmentation draws from (an in-memory dataset such as glyphs draws its augmentations in the main process,
  from torch's state);
* with `--amp fp16`, the grad scaler's state;
* the number of processes; under several (torchrun), every process's random states (`process_rng`, by
  rank) and the state of the loss's shared stream (`shared_rng`, utilities/distributed.SharedRandomness);
  a run resumes with the number of processes it was trained with;
* the last completed epoch, the logged history (for best values and the summary), the training seconds so
  far, the options, the size of the training split and the W&B run id;
* written between two steps, `progress`: the step reached in the unfinished epoch and the running sums of
  its statistics (utilities/training.EpochProgress). The sampler's and the loader generator's states are
  then those of the start of that epoch, the other random states those of the moment it stopped: the
  resumed run draws the epoch's batches again, drops the ones already trained on, and continues from the
  next step, with the random numbers of an uninterrupted run. A storage sampler's storage is in it twice:
  as the epoch began (with the sampler's state, to choose the epoch's batches again) and as it stopped.

A run killed without warning (SIGKILL, a crash) restarts from the end of the epoch of its last checkpoint
and replays the epochs after it with the same random numbers. Either way, on the same machine it ends with
the same weights and metrics as a run that was never interrupted (on CUDA with `--deterministic`). CSV rows
an interrupted run wrote for epochs after the checkpoint's are dropped before the run continues.

`--checkpoint` takes a run folder or a `checkpoint_last.pth.tar` file; the run continues in the folder that
holds the file. Best-metric checkpoints hold the model only (for evaluation) and are refused. A resumed
run keeps its settings: a flag given on the command line that differs from the run's is refused, except
the ones in `CHANGEABLE` (e.g. a larger --n_epochs to train longer); the data it finds must have the size
the run was trained on.
"""
from __future__ import annotations

import argparse
import glob
import os
import random
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from utilities import distributed
from utilities.checkpoint import NOT_A_CHECKPOINT, load_cpu
from utilities.errors import UsageError
from utilities.training import EpochProgress

LAST_CHECKPOINT = "checkpoint_last.pth.tar"
FORMAT = 1
#: Flags a resumed run may change: how long and where it runs, and what it draws; never what it learns.
CHANGEABLE = ("checkpoint", "dry_run", "n_epochs", "kernels", "device", "gpu", "source_path", "save_path",
              "log_online", "plot_every", "retrieval_queries", "retrieval_k", "tsne_points", "checkpoint_every",
              "train_eval_every", "data_cache_gb", "data_cache_dir", "dist_timeout")


@dataclass
class Resumed:
    """A run to continue: its folder, the merged options and the loaded checkpoint."""

    run_dir: str
    opt: argparse.Namespace
    state: dict
    path: str


def locate(path: str) -> str:
    """The checkpoint file that `--checkpoint path` names: the file itself, or `<folder>/checkpoint_last.pth.tar`."""
    if os.path.isdir(path):
        candidate = os.path.join(path, LAST_CHECKPOINT)
        if not os.path.isfile(candidate):
            raise UsageError(f"--checkpoint {path}: no {LAST_CHECKPOINT} in this folder; a run writes it at the end "
                             "of each epoch and when it is stopped by SIGTERM or SIGINT, so this run did neither")
        return candidate
    if not os.path.isfile(path):
        raise UsageError(f"--checkpoint {path}: no such file or folder")
    return path


def load(path: str) -> dict:
    """Load a resumable checkpoint on the CPU (tensors and plain values only: no code is unpickled)."""
    state = load_cpu(path, remedy=f"{NOT_A_CHECKPOINT}; pass a run folder or its {LAST_CHECKPOINT}")
    if not isinstance(state, dict) or state.get("format") != FORMAT or "optimizer" not in state:
        raise UsageError(f"--checkpoint {path}: not a resumable checkpoint (best-metric checkpoints hold the model only); "
                         f"pass the run folder or its {LAST_CHECKPOINT}")
    return state


def given_flags(argv: Optional[Sequence[str]], parser: argparse.ArgumentParser) -> set:
    """The option names (dests) that `argv` sets explicitly, defaults aside; `parser` is the CLI's, changed here."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def merge_options(opt: argparse.Namespace, argv: Optional[Sequence[str]], saved: dict,
                  parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The run's saved options, with the `CHANGEABLE` flags that `argv` gives; other differing flags are refused.
    `parser` is a fresh parser of the CLI (parameters.build_parser())."""
    given = given_flags(argv, parser)
    current = vars(opt)
    conflicts = [f"--{k} {_show(current[k])} (the run has {_show(saved[k])})"
                 for k in sorted(given) if k not in CHANGEABLE and k in saved and current[k] != saved[k]]
    if conflicts:
        raise UsageError("--checkpoint: a resumed run keeps its settings, and these flags differ: "
                         + "; ".join(conflicts) + ". Drop them, or start a new run")
    merged = dict(current)
    merged.update({k: v for k, v in saved.items() if k in current and not (k in given and k in CHANGEABLE)})
    return argparse.Namespace(**merged)


def prepare(opt: argparse.Namespace, argv: Optional[Sequence[str]], parser: argparse.ArgumentParser) -> Resumed:
    """Find and load the checkpoint `--checkpoint` names, and merge its options with the command line's
    (`parser`: a fresh parser of the CLI, parameters.build_parser())."""
    path = locate(opt.checkpoint)
    state = load(path)
    merged = merge_options(opt, argv, state["opt"], parser)
    merged.checkpoint = opt.checkpoint
    completed = state["epoch"] + 1
    needed = completed + (1 if state.get("progress") else 0)
    if merged.n_epochs < needed:
        started = f" and started epoch {completed + 1}" if state.get("progress") else ""
        raise UsageError(f"--n_epochs {merged.n_epochs}: the run has completed {completed} epoch(s){started}; "
                         f"pass --n_epochs {needed} or more to train longer, or leave it out to finish the run "
                         f"({state['opt']['n_epochs']} epochs)")
    return Resumed(run_dir=os.path.dirname(os.path.abspath(path)), opt=merged, state=state, path=path)


def rng_state(loader_generator: torch.Generator) -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": loader_generator.get_state(),
    }


def set_rng_state(state: dict, loader_generator: torch.Generator) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    loader_generator.set_state(state["loader"])


def process_rng_state(loader, progress: Optional[EpochProgress] = None) -> dict:
    """This process's random states for a checkpoint; within an epoch (`progress`) the loader generator's is
    the one of the epoch's start."""
    rng = rng_state(loader.generator)
    if progress is not None:
        rng["loader"] = progress.loader_state
    return rng


def gather_training_state(*, loader, progress: Optional[EpochProgress] = None, randomness=None,
                          **state) -> Optional[dict]:
    """`training_state` on rank 0 (None elsewhere), with every process's random states: a collective that every
    process calls at the same point (utilities/distributed.py; one process: just `training_state`).
    `randomness`: the loss's SharedRandomness under several processes (None otherwise)."""
    rngs = distributed.to_main(process_rng_state(loader, progress))
    if not distributed.current().is_main:
        return None
    saved = training_state(loader=loader, progress=progress, **state)
    saved["world_size"] = len(rngs)
    if len(rngs) > 1:
        saved["process_rng"] = rngs
        saved["shared_rng"] = randomness.state_dict()
    return saved


def training_state(*, epoch: int, model, criterion, optimizer, scheduler, loader, history: dict,
                   train_seconds: float, opt_dict: dict, online: Optional[dict],
                   progress: Optional[EpochProgress] = None, precision=None) -> dict:
    """The `last` checkpoint after `epoch` (0-based; -1: none) has completed, and `progress` steps into the next;
    `precision` (utilities/precision.Precision) holds the grad scaler of `--amp fp16`."""
    rng = process_rng_state(loader, progress)
    sampler = progress.sampler_state if progress is not None else loader.batch_sampler.state_dict()
    return {
        "scaler": precision.state_dict() if precision is not None else None,
        "format": FORMAT,
        "epoch": epoch,
        "model": model.state_dict(),
        "criterion": criterion.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "sampler": sampler,
        "rng": rng,
        "progress": progress.counters() if progress is not None else None,
        "data": data_size(loader.dataset),
        "history": history,
        "train_seconds": train_seconds,
        "opt": opt_dict,
        "online": online,
    }


def data_size(training_split) -> dict:
    return {"classes": training_split.n_classes, "images": len(training_split)}


def check_world_size(state: dict) -> None:
    """A run continues with the number of processes it was trained with: each process's augmentations come
    from its own random stream, which a different number of processes cannot re-split exactly."""
    saved, now = state.get("world_size", 1), distributed.current().world_size
    if saved != now:
        how = "python main.py" if saved == 1 else f"torchrun --nproc_per_node/--nnodes giving {saved} processes"
        raise UsageError(f"--checkpoint: the run was trained with {saved} process(es) and this launch has {now}; "
                         f"resume it with {how} (each process's random augmentations cannot be re-split exactly "
                         "over another number of processes)")


def restore(state: dict, *, model, criterion, optimizer, scheduler, loader,
            precision=None, randomness=None) -> Tuple[int, Optional[EpochProgress]]:
    """Load `state` into freshly built objects (random states last); returns the first epoch still to run and,
    when the checkpoint was written inside it, how far that epoch had come. Under several processes each
    takes its own random states, and `randomness` (the loss's SharedRandomness) the shared one."""
    check_world_size(state)
    saved = state.get("data")
    if saved is not None and saved != data_size(loader.dataset):
        found = data_size(loader.dataset)
        raise UsageError(f"--checkpoint: the run was trained on {saved['classes']} classes and {saved['images']} "
                         f"images, but the data found now has {found['classes']} classes and {found['images']}; "
                         "pass the --source_path the run was trained on")
    try:
        model.load_state_dict(state["model"])
        criterion.load_state_dict(state["criterion"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise UsageError(f"--checkpoint: its weights do not fit the model built from the run's settings and data "
                         f"({str(err).strip().splitlines()[0][:200]}); pass the --source_path the run was trained on"
                         ) from None
    if precision is not None:
        precision.load_state_dict(state.get("scaler"))
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    loader.batch_sampler.load_state_dict(state["sampler"])
    rng = state["process_rng"][distributed.current().rank] if "process_rng" in state else state["rng"]
    set_rng_state(rng, loader.generator)
    if randomness is not None:
        randomness.load_state_dict(state["shared_rng"])
    progress = state.get("progress")
    if progress is not None:
        progress = EpochProgress(**progress, sampler_state=state["sampler"], loader_state=rng["loader"])
    return state["epoch"] + 1, progress


def remove_partial_writes(run_dir: str) -> int:
    """Delete temporary files that a kill during `save_atomic` left behind; returns how many."""
    stale = glob.glob(os.path.join(run_dir, ".tmp_*.pth"))
    for path in stale:
        os.remove(path)
    return len(stale)
