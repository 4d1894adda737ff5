"""Weights & Biases logging for --log_online. The API key comes from WANDB_API_KEY only."""
from __future__ import annotations

import os
from typing import Optional

from utilities.errors import UsageError
from utilities.run_folder import jsonable_options

OFFLINE_MODES = ("offline", "disabled", "dryrun")


def start(opt, run_dir: str, name: str, run_id: Optional[str] = None):
    """Start a W&B run (project --project, group --group, name = run name), or return None without --log_online.

    Without WANDB_API_KEY the run must be offline (WANDB_MODE=offline, synced later with `wandb sync`) or
    disabled; otherwise W&B would stop to ask for a key, which a batch job cannot answer. A resumed run passes
    the `run_id` it had, so W&B continues the same run (offline: a new offline folder with the same id, which
    `wandb sync` merges).
    """
    if not opt.log_online:
        return None
    try:
        import wandb
    except ImportError:
        raise UsageError("--log_online needs the wandb package: pip install wandb") from None
    mode = os.environ.get("WANDB_MODE", "").lower()
    if not os.environ.get("WANDB_API_KEY") and mode not in OFFLINE_MODES:
        raise UsageError("--log_online: export WANDB_API_KEY=<key>, or WANDB_MODE=offline to log locally and sync later")
    # The mode is passed explicitly: wandb caches its settings per process, so a second run in the same process
    # (tests, notebooks) would otherwise keep the first run's mode.
    return wandb.init(project=opt.project, group=opt.group, name=name, dir=run_dir, id=run_id,
                      resume="allow" if run_id else None, config=jsonable_options(opt), mode=mode or None,
                      settings=wandb.Settings(silent=True))
