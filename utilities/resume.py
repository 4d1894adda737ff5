"""Exact resumption with `--checkpoint`: what a `last` checkpoint holds, how it is found, and how a run is restored.

At the end of every `--checkpoint_every` epochs (default 1) and of the last one (after evaluation, logging,
the best checkpoints and the scheduler step) a run writes `<run>/checkpoint_last.pth.tar` atomically
(utilities/checkpoint.save_atomic), from a snapshot, in the background (utilities/async_checkpoint.py).
It holds everything the next epoch depends on:

* the model; the criterion (S2SD's target heads and their criteria, margin betas, proxies, and S2SD's
  iteration counter, a buffer); the optimizer; the scheduler;
* the batch sampler's generator, and the random states of Python, numpy, torch (CPU and CUDA) and of the
  training loader's own generator: the one the loader seeds its workers (or, on CUDA, each batch) from,
  or with the decoded-image store the one every batch-wise augmentation draws from (an in-memory dataset
  such as glyphs draws its augmentations in the main process, from torch's state);
* with `--amp fp16`, the grad scaler's state;
* the epoch, the logged history (for best values and the summary), the training seconds so far, the
  options and the W&B run id.

A run killed in the middle of epoch e restarts from the end of epoch e - 1 and replays epoch e with the
same random numbers, so on the same machine it ends with the same weights and metrics as a run that was
never interrupted (on CUDA with `--deterministic`). CSV rows the killed run wrote for epoch e are dropped
before the replay.

`--checkpoint` takes a run folder or a `checkpoint_last.pth.tar` file; the run continues in the folder that
holds the file. Best-metric checkpoints hold the model only (for evaluation) and are refused. A resumed
run keeps its settings: a flag given on the command line that differs from the run's is refused, except
the ones in `CHANGEABLE` (e.g. a larger --n_epochs to train longer).
"""
from __future__ import annotations

import argparse
import glob
import os
import random
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from utilities.checkpoint import load_cpu
from utilities.errors import UsageError

LAST_CHECKPOINT = "checkpoint_last.pth.tar"
FORMAT = 1
#: Flags a resumed run may change: how long and where it runs, and what it draws; never what it learns.
CHANGEABLE = ("checkpoint", "dry_run", "n_epochs", "kernels", "device", "gpu", "source_path", "save_path",
              "log_online", "plot_every", "retrieval_queries", "retrieval_k", "tsne_points", "checkpoint_every",
              "train_eval_every", "data_cache_gb", "data_cache_dir")


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
                             "of each epoch, so this run did not finish one")
        return candidate
    if not os.path.isfile(path):
        raise UsageError(f"--checkpoint {path}: no such file or folder")
    return path


def load(path: str) -> dict:
    """Load a resumable checkpoint on the CPU (tensors and plain values only: no code is unpickled)."""
    state = load_cpu(path)
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


def training_state(*, epoch: int, model, criterion, optimizer, scheduler, loader, history: dict,
                   train_seconds: float, opt_dict: dict, online: Optional[dict], precision=None) -> dict:
    """The `last` checkpoint after `epoch` (0-based) has completed."""
    return {
        "scaler": precision.state_dict() if precision is not None else None,
        "format": FORMAT,
        "epoch": epoch,
        "model": model.state_dict(),
        "criterion": criterion.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "sampler": loader.batch_sampler.state_dict(),
        "rng": rng_state(loader.generator),
        "history": history,
        "train_seconds": train_seconds,
        "opt": opt_dict,
        "online": online,
    }


def restore(state: dict, *, model, criterion, optimizer, scheduler, loader, precision=None) -> int:
    """Load `state` into freshly built objects (random states last); returns the first epoch still to run."""
    if precision is not None:
        precision.load_state_dict(state.get("scaler"))
    model.load_state_dict(state["model"])
    criterion.load_state_dict(state["criterion"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    loader.batch_sampler.load_state_dict(state["sampler"])
    set_rng_state(state["rng"], loader.generator)
    return state["epoch"] + 1


def remove_partial_writes(run_dir: str) -> int:
    """Delete temporary files that a kill during `save_atomic` left behind; returns how many."""
    stale = glob.glob(os.path.join(run_dir, ".tmp_*.pth"))
    for path in stale:
        os.remove(path)
    return len(stale)
