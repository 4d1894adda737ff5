"""A trained run, ready to embed: its options, one of its checkpoints, and the network rebuilt from both.

The options come from the run folder's `parameters.json` (written when the run starts), laid over today's
defaults, so a run made before a flag existed still loads. Only the model's weights are read from the
checkpoint: a best checkpoint holds `{"model", "epoch", "opt", ...}` (runs before issue 10 also kept the
criterion there), a `last` one the whole training state, and a file holding the state dict alone is accepted too. S2SD's target heads live in the
criterion, so they are never built: the network is the embedding network that the run evaluated.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from dataclasses import dataclass

import torch

import parameters
from inference import adapters
from evaluation.epoch import best_checkpoint_name
from utilities.checkpoint import load_cpu
from utilities.errors import UsageError
from utilities.resume import LAST_CHECKPOINT

#: `--checkpoint` names that pick a file by role rather than by file name.
ROLES = ("best", "last")


@dataclass
class Run:
    """A run folder, its options, the checkpoint file used and the network with its weights (eval mode)."""

    run_dir: str
    opt: argparse.Namespace
    checkpoint: str
    model: torch.nn.Module


def read_options(run_dir: str) -> argparse.Namespace:
    """The run's options: `<run>/parameters.json` over the parser's defaults."""
    if not os.path.isdir(run_dir):
        raise UsageError(f"--run {run_dir}: no such folder; pass a run folder such as Training_Results/glyphs/<run>")
    path = os.path.join(run_dir, "parameters.json")
    try:
        with open(path) as f:
            saved = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"--run {run_dir}: no parameters.json in this folder; is it a run folder made by main.py?") \
            from None
    except (OSError, ValueError) as err:
        raise UsageError(f"--run {run_dir}: cannot read parameters.json ({err})") from None
    opt = parameters.build_parser().parse_args([])
    vars(opt).update(saved)
    # The weights come from the checkpoint: never look for ImageNet weights.
    opt.not_pretrained = True
    return opt


def checkpoint_path(run_dir: str, opt, name: str) -> str:
    """The file `--checkpoint name` picks: `best` (the best checkpoint of the run's first --storage_metrics
    entry and --evaltypes entry, on the split it selected on), `last`, or a file name in the run folder."""
    present = sorted(os.path.basename(p) for p in glob.glob(os.path.join(run_dir, "checkpoint_*.pth.tar")))
    if not present:
        raise UsageError(f"--run {run_dir}: no checkpoint (checkpoint_*.pth.tar) in this folder; a run writes them "
                         "at the end of each epoch, so this one did not finish one")
    if name == "best":
        split = "validation" if opt.use_tv_split else "testing"
        file = best_checkpoint_name(split, opt.evaltypes[0], opt.storage_metrics[0])
    elif name == "last":
        file = LAST_CHECKPOINT
    else:
        file = name
    path = os.path.join(run_dir, file)
    if not os.path.isfile(path):
        raise UsageError(f"--checkpoint {name}: {run_dir} has no {file}; it has {', '.join(present)} "
                         f"(pass --checkpoint {' or '.join(ROLES)}, or one of these file names)")
    return path


def model_weights(path: str) -> dict:
    """The model's state dict in a checkpoint file (loaded on the CPU, tensors and plain values only)."""
    state = load_cpu(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        return state["model"]
    return state


def load(run_dir: str, checkpoint: str = "best", device: torch.device = torch.device("cpu")) -> Run:
    """Rebuild the run's network and load the weights of `checkpoint` (see `checkpoint_path`)."""
    opt = read_options(run_dir)
    path = checkpoint_path(run_dir, opt, checkpoint)
    weights = model_weights(path)
    model = adapters.build_network(opt)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise UsageError(f"--checkpoint {path}: its weights do not fit the network the run's options build "
                         f"(--arch {opt.arch}, --embed_dim {opt.embed_dim}): {str(err).splitlines()[0]}") from None
    return Run(os.path.abspath(run_dir), opt, path, model.to(device).eval())
