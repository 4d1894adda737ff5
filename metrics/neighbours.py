"""Exact k-nearest-neighbour search with faiss, each query's own index removed by index."""
from __future__ import annotations

from typing import Optional

import numpy as np


def remove_self(indices: np.ndarray, k: int) -> np.ndarray:
    """Drop each row's own index from N x (k+1) neighbour lists; rows where it is absent (exact duplicates
    ranked ahead of it) drop their last column instead. Returns N x k."""
    n = len(indices)
    is_self = indices == np.arange(n)[:, None]
    drop = is_self.copy()
    no_self = ~is_self.any(1)
    drop[no_self, -1] = True
    first = drop.cumsum(1) == 1
    drop &= first  # exactly one column per row
    return indices[~drop].reshape(n, k)


def nearest_neighbours(x: np.ndarray, k: int, threads: Optional[int] = None, chunk: int = 16384) -> np.ndarray:
    """N x k indices of the k nearest other points of each row of x (squared L2, exact), -1 padded when k >= N.

    Queries are searched in chunks, so the result is O(N k) memory.
    """
    import faiss

    n = len(x)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64)
    if threads:
        faiss.omp_set_num_threads(threads)
    k_search = min(k + 1, n)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    parts = [index.search(x[start:start + chunk], k_search)[1] for start in range(0, n, chunk)]
    found = remove_self(np.concatenate(parts), k_search - 1)
    if found.shape[1] < k:
        found = np.concatenate([found, -np.ones((n, k - found.shape[1]), dtype=found.dtype)], axis=1)
    return found
