"""One `--seed` fixes Python, numpy, torch (CPU and CUDA), the batch sampler and every DataLoader worker."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from utilities.preemption import ignore_in_worker


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def worker_init(worker_id: int) -> None:
    """Seed numpy and `random` in a DataLoader worker from the per-worker torch seed; the worker leaves stop
    signals to the main process (utilities/preemption.py)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    ignore_in_worker()


@contextlib.contextmanager
def random_states_kept():
    """Run a block without moving the random streams of Python, numpy and torch (CPU and every CUDA device)."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
