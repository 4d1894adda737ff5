"""Exact k-nearest-neighbour search, streamed in query chunks so that memory stays O(N k), never N x N.

Ranking: squared Euclidean distance, ties broken by the smaller gallery index. Both backends produce this
canonical order, so the metrics do not depend on which one ran:

* `faiss_neighbours` (CPU): `faiss.IndexFlatL2`, whose result heap already breaks ties by index (checked
  for faiss-cpu 1.15; `IndexFlatIP` does not, which is why cosine neighbours are searched as Euclidean
  neighbours of the L2-normalised embeddings, the same ranking);
* `torch_neighbours` (any torch device, used on the GPU): one chunk of queries against the whole gallery
  by matmul, `topk`, then an exact re-selection of the rows whose k-th distance is tied.

In leave-one-out evaluation (`exclude_self`, query set = gallery) each query's own index is removed by
index, not by dropping column 0, which is wrong under exact duplicates. Rows are padded with -1 when fewer
than k candidates exist.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np

from metrics.threads import thread_limit

#: Bytes of search results (faiss) or of distance blocks (torch) held per query chunk.
FAISS_CHUNK_BYTES = 128 << 20
TORCH_CHUNK_BYTES = {"cpu": 256 << 20, "cuda": 2 << 30}


def remove_self(indices: np.ndarray, k: int, offset: int = 0) -> np.ndarray:
    """Drop each row's own index (`offset + row`) from n x (k+1) neighbour lists; rows where it is absent
    (more exact duplicates with smaller indices than fit in the list) drop their last column instead.
    Returns n x k."""
    n = len(indices)
    is_self = indices == (offset + np.arange(n))[:, None]
    drop = is_self.copy()
    drop[~is_self.any(1), -1] = True
    drop &= drop.cumsum(1) == 1  # exactly one column per row
    return indices[~drop].reshape(n, k)


def _pad(indices: np.ndarray, k: int) -> np.ndarray:
    if indices.shape[1] >= k:
        return indices
    pad = -np.ones((len(indices), k - indices.shape[1]), dtype=indices.dtype)
    return np.concatenate([indices, pad], axis=1)


def faiss_neighbours(query: np.ndarray, gallery: np.ndarray, k: int, *, exclude_self: bool,
                     threads: Optional[int] = None, device=None) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield (first query row, chunk x k gallery indices) for consecutive query chunks."""
    import faiss

    n_query = len(query)
    k_search = min(k + int(exclude_self), len(gallery))
    if k <= 0 or k_search - int(exclude_self) <= 0:
        for start in range(0, n_query, 1 << 16):
            yield start, -np.ones((min(1 << 16, n_query - start), k), dtype=np.int64)
        return
    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(gallery)
    rows = max(4096, FAISS_CHUNK_BYTES // (12 * k_search))
    for start in range(0, n_query, rows):
        chunk = query[start:start + rows]
        with thread_limit(len(chunk) * gallery.size, threads):
            _, found = index.search(chunk, k_search)
        if exclude_self:
            found = remove_self(found, k_search - 1, offset=start)
        yield start, _pad(found, k)


def torch_neighbours(query, gallery, k: int, *, exclude_self: bool, threads: Optional[int] = None,
                     device=None) -> Iterator[Tuple[int, np.ndarray]]:
    """The same contract as `faiss_neighbours`, computed with torch on `device` (default: CPU)."""
    import torch

    device = torch.device(device or "cpu")
    q = torch.as_tensor(np.asarray(query), device=device)
    g = q if exclude_self and gallery is query else torch.as_tensor(np.asarray(gallery), device=device)
    n_query, n_gallery = len(q), len(g)
    k_search = min(k, n_gallery - int(exclude_self))
    if k_search <= 0:
        for start in range(0, n_query, 1 << 16):
            yield start, -np.ones((min(1 << 16, n_query - start), k), dtype=np.int64)
        return
    g_sq = (g * g).sum(1)
    rows = max(1, TORCH_CHUNK_BYTES.get(device.type, TORCH_CHUNK_BYTES["cpu"]) // (16 * n_gallery))
    for start in range(0, n_query, rows):
        qc = q[start:start + rows]
        with thread_limit(len(qc) * g.numel(), threads):
            dist = ((qc * qc).sum(1, keepdim=True) + g_sq[None, :] - 2.0 * (qc @ g.T)).clamp_min_(0.0)
            if exclude_self:
                own = torch.arange(start, start + len(qc), device=device)
                dist[torch.arange(len(qc), device=device), own] = float("inf")
            found = canonical_topk(dist, k_search)
        yield start, _pad(found.cpu().numpy(), k)


def canonical_topk(dist, k: int):
    """Indices of the k smallest entries of each row of `dist`, ordered by (distance, index).

    `torch.topk` picks among equal values arbitrarily; rows whose k-th value is tied with values left out
    are re-selected exactly: all values below the k-th, then the tied ones with the smallest indices.
    """
    import torch

    values, found = torch.topk(dist, k, dim=1, largest=False, sorted=True)
    kth = values[:, -1:]
    n_below = (dist < kth).sum(1)
    ambiguous = (n_below + (dist == kth).sum(1)) > k
    if bool(ambiguous.any()):
        rows = ambiguous.nonzero().squeeze(1)
        d, t = dist[rows], kth[rows]
        tied = d == t
        take = (d < t) | (tied & (tied.int().cumsum(1) <= (k - n_below[rows])[:, None]))
        found[rows] = take.nonzero()[:, 1].view(len(rows), k)
    found, _ = found.sort(1)
    order = dist.gather(1, found).sort(dim=1, stable=True)[1]
    return found.gather(1, order)


def nearest_neighbours(x: np.ndarray, k: int, threads: Optional[int] = None) -> np.ndarray:
    """N x k indices of the k nearest other points of each row of x (faiss, leave-one-out), -1 padded."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    parts = [found for _, found in faiss_neighbours(x, x, k, exclude_self=True, threads=threads)]
    return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)
