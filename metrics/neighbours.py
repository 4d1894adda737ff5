"""Exact k-nearest-neighbour search, streamed in query chunks so that memory stays O(N k), never N x N.

Ranking: squared Euclidean distance, ties broken by the smaller gallery index. Both backends produce this
canonical order, so the metrics do not depend on which one ran:

* `faiss_neighbours` (CPU): `faiss.IndexFlatL2`, whose result heap already breaks ties by index (checked
  for faiss-cpu 1.15; `IndexFlatIP` does not, which is why cosine neighbours are searched as Euclidean
  neighbours of the L2-normalised embeddings, the same ranking);
* `torch_neighbours` (any torch device, used on the GPU; numpy arrays or tensors, which stay where they
  are when that is `device`): one chunk of queries against the whole gallery
  by matmul, `topk`, then an exact re-selection of the rows whose k-th distance is tied.

In leave-one-out evaluation (`self_index`: the gallery index of each query) each query's own index is removed
by index, not by dropping column 0, which is wrong under exact duplicates. Rows are padded with -1 when fewer
than k candidates exist.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np

from metrics.threads import thread_limit

#: Bytes of search results (faiss) or of distance blocks (torch) held per query chunk.
FAISS_CHUNK_BYTES = 128 << 20
TORCH_CHUNK_BYTES = {"cpu": 256 << 20, "cuda": 2 << 30}


def remove_self(indices: np.ndarray, k: int, self_index: np.ndarray) -> np.ndarray:
    """Drop each row's own gallery index (`self_index[row]`) from n x (k+1) neighbour lists; rows where it is
    absent (more exact duplicates with smaller indices than fit in the list) drop their last column instead.
    Returns n x k."""
    is_self = indices == np.asarray(self_index)[:, None]
    position = np.where(is_self.any(1), is_self.argmax(1), k)
    columns = np.arange(k)[None, :]
    return np.take_along_axis(indices, columns + (columns >= position[:, None]), axis=1)


def _pad(indices: np.ndarray, k: int) -> np.ndarray:
    if indices.shape[1] >= k:
        return indices
    pad = -np.ones((len(indices), k - indices.shape[1]), dtype=indices.dtype)
    return np.concatenate([indices, pad], axis=1)


def _nothing_to_find(n_query: int, k: int) -> Iterator[Tuple[int, np.ndarray]]:
    for start in range(0, n_query, 1 << 16):
        yield start, -np.ones((min(1 << 16, n_query - start), k), dtype=np.int64)


def faiss_neighbours(query: np.ndarray, gallery: np.ndarray, k: int, *, self_index: Optional[np.ndarray] = None,
                     threads: Optional[int] = None, device=None) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield (first query row, chunk x k gallery indices) for consecutive query chunks. `self_index[i]`, when
    given, is the gallery index of query i itself (leave-one-out), which is excluded."""
    import faiss

    own = int(self_index is not None)
    k_search = min(k + own, len(gallery))
    if k <= 0 or k_search - own <= 0:
        yield from _nothing_to_find(len(query), k)
        return
    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(gallery)
    rows = max(4096, FAISS_CHUNK_BYTES // (12 * k_search))
    for start in range(0, len(query), rows):
        chunk = query[start:start + rows]
        with thread_limit(len(chunk) * gallery.size, threads):
            _, found = index.search(chunk, k_search)
        if own:
            found = remove_self(found, k_search - 1, self_index[start:start + rows])
        yield start, _pad(found, k)


def torch_neighbours(query, gallery, k: int, *, self_index: Optional[np.ndarray] = None,
                     threads: Optional[int] = None, device=None) -> Iterator[Tuple[int, np.ndarray]]:
    """The same contract as `faiss_neighbours`, computed with torch on `device` (default: CPU)."""
    import torch

    device = torch.device(device or "cpu")
    g = as_tensor(gallery, device)
    q = g if query is gallery else as_tensor(query, device)
    k_search = min(k, len(g) - int(self_index is not None))
    if k_search <= 0:
        yield from _nothing_to_find(len(q), k)
        return
    own = None if self_index is None else torch.as_tensor(np.asarray(self_index), device=device)
    g_sq = (g * g).sum(1)
    rows = max(1, TORCH_CHUNK_BYTES.get(device.type, TORCH_CHUNK_BYTES["cpu"]) // (16 * len(g)))
    for start in range(0, len(q), rows):
        qc = q[start:start + rows]
        with thread_limit(len(qc) * g.numel(), threads):
            dist = ((qc * qc).sum(1, keepdim=True) + g_sq[None, :] - 2.0 * (qc @ g.T)).clamp_min_(0.0)
            if own is not None:
                dist[torch.arange(len(qc), device=device), own[start:start + rows]] = float("inf")
            found = canonical_topk(dist, k_search)
        yield start, _pad(found.cpu().numpy(), k)


def as_tensor(x, device):
    """`x` (a numpy array or a tensor anywhere) as a tensor on `device`, without a copy when it is there."""
    import torch

    return x.to(device) if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), device=device)


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

