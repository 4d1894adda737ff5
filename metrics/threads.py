"""Thread counts for the faiss and torch work of one metric computation."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Optional

#: Below this many multiply-adds one thread is faster: OpenMP start-up and barriers cost more than the work,
#: and on a loaded machine (other processes on the cores) far more (measured: 0.3 s instead of 0.5 ms for
#: a 60-point k-means on 2 busy cores).
SMALL_WORK = 1e7


@contextmanager
def thread_limit(work: float, threads: Optional[int]):
    """Run the block with one thread when `work` is small, else with `threads` (None: library default);
    the previous settings are restored afterwards. faiss and torch are only touched if they are already
    imported (the torch backend runs without faiss installed)."""
    n = 1 if work < SMALL_WORK else threads
    if not n:
        yield
        return
    faiss, torch = sys.modules.get("faiss"), sys.modules.get("torch")
    previous = faiss.omp_get_max_threads() if faiss else None, torch.get_num_threads() if torch else None
    if faiss:
        faiss.omp_set_num_threads(n)
    if torch:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if faiss:
            faiss.omp_set_num_threads(previous[0])
        if torch:
            torch.set_num_threads(previous[1])
