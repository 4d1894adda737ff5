"""k-means cluster assignments with faiss."""
from __future__ import annotations

from typing import Optional

import numpy as np


def kmeans_assignments(x: np.ndarray, n_clusters: int, *, seed: int = 0, n_iter: int = 20,
                       threads: Optional[int] = None) -> np.ndarray:
    """Cluster x into `n_clusters` with faiss k-means (20 iterations, fixed seed, no subsampling) and return
    each point's nearest centroid."""
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    n_clusters = min(n_clusters, len(x))
    kmeans = faiss.Kmeans(x.shape[1], n_clusters, niter=n_iter, seed=seed, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=max(len(x), 1))
    kmeans.train(x)
    _, assignment = kmeans.index.search(x, 1)
    return assignment[:, 0]
