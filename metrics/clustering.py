"""k-means cluster assignments: faiss on the CPU (or on the GPU with a faiss-gpu build), torch on any device.

Both run Lloyd's algorithm for `n_iter` iterations from `n_clusters` distinct data points drawn with `seed`,
with no subsampling, re-seed an empty cluster by splitting a populated one (as faiss does), and return each
point's nearest final centroid. `spherical` k-means renormalises the centroids after every update, so on
L2-normalised points the assignment maximises cosine similarity (the reference's `c_nmi`/`c_f1` clustering,
whose cosine centroids the reference then overwrote with the Euclidean ones, REFERENCE.md §6 item 20).

The two implementations draw different initial centroids, so their assignments agree where the clustering
is well determined and may differ slightly elsewhere.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from metrics.neighbours import as_tensor
from metrics.threads import thread_limit

#: faiss' relative perturbation when an empty cluster takes over half of a populated one.
SPLIT_EPS = 1.0 / 1024.0


def faiss_kmeans(x: np.ndarray, n_clusters: int, *, seed: int = 0, n_iter: int = 20, spherical: bool = False,
                 threads: Optional[int] = None, device=None, gpu: bool = False) -> np.ndarray:
    """faiss' k-means; `gpu` trains it on the GPU (a faiss-gpu build)."""
    import faiss

    from metrics import as_numpy

    x = np.ascontiguousarray(as_numpy(x), dtype=np.float32)
    n_clusters = max(1, min(n_clusters, len(x)))
    kmeans = faiss.Kmeans(x.shape[1], n_clusters, niter=n_iter, seed=seed, spherical=spherical, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=max(len(x), 1), gpu=gpu)
    with thread_limit(x.size * n_clusters * n_iter, threads):
        kmeans.train(x)
        _, assignment = kmeans.index.search(x, 1)
    return assignment[:, 0].astype(np.int64)


def faiss_gpu_kmeans(x, n_clusters: int, **options) -> np.ndarray:
    return faiss_kmeans(x, n_clusters, gpu=True, **options)


def torch_kmeans(x, n_clusters: int, *, seed: int = 0, n_iter: int = 20, spherical: bool = False,
                 threads: Optional[int] = None, device=None) -> np.ndarray:
    with thread_limit(x.shape[0] * x.shape[1] * n_clusters * n_iter, threads):
        return _torch_kmeans(x, n_clusters, seed=seed, n_iter=n_iter, spherical=spherical, device=device)


def _torch_kmeans(x, n_clusters: int, *, seed: int, n_iter: int, spherical: bool, device) -> np.ndarray:
    import torch

    device = torch.device(device or "cpu")
    x = as_tensor(x, device).float()
    n, dim = x.shape
    n_clusters = max(1, min(n_clusters, n))
    generator = torch.Generator().manual_seed(seed)
    centroids = x[torch.randperm(n, generator=generator)[:n_clusters].to(device)].clone()
    for _ in range(n_iter):
        assignment = _nearest_centroid(x, centroids)
        counts = torch.bincount(assignment, minlength=n_clusters)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None].to(x.dtype)
        empty = (~filled).nonzero().squeeze(1)
        if len(empty):
            # An empty cluster restarts next to a populated one, picked with probability ~ (size - 1), and the
            # points of that cluster split between the two along a random sign pattern.
            weights = (counts - 1).clamp_min(0).double().cpu()
            donors = torch.multinomial(weights, len(empty), replacement=True, generator=generator).to(device)
            signs = torch.randint(0, 2, (len(empty), dim), generator=generator).to(device, x.dtype) * 2 - 1
            centroids[empty] = centroids[donors] * (1 + SPLIT_EPS * signs)
        if spherical:
            centroids = torch.nn.functional.normalize(centroids, dim=1)
    return _nearest_centroid(x, centroids).cpu().numpy()


def _nearest_centroid(x, centroids, chunk_bytes: int = 256 << 20):
    """Index of each row's nearest centroid (squared Euclidean; the first one on ties), in row chunks."""
    import torch

    c_sq = (centroids * centroids).sum(1)
    rows = max(1, chunk_bytes // (4 * len(centroids)))
    parts = [(c_sq[None, :] - 2.0 * (x[s:s + rows] @ centroids.T)).argmin(1) for s in range(0, len(x), rows)]
    return torch.cat(parts)
