"""The shared work of one evaluation, computed lazily and at most once."""
from __future__ import annotations

from functools import cached_property
from typing import Optional

import numpy as np

from metrics.clustering import kmeans_assignments
from metrics.neighbours import nearest_neighbours


class EvaluationContext:
    """Embeddings, labels and the lazily computed neighbour indices and cluster assignments."""

    def __init__(self, embeddings: np.ndarray, labels: np.ndarray, *, k_max: int, n_clusters: Optional[int],
                 seed: int, threads: Optional[int]):
        if embeddings.ndim != 2 or len(embeddings) != len(labels):
            raise ValueError(f"embeddings must be N x D with N = len(labels); got {embeddings.shape} and {labels.shape}")
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.labels = labels
        self.k_max = k_max
        self.n_clusters = n_clusters if n_clusters is not None else len(np.unique(labels))
        self.seed = seed
        self.threads = threads

    @cached_property
    def neighbours(self) -> np.ndarray:
        """N x k_max indices of each query's nearest other samples (Euclidean), -1 where fewer exist."""
        return nearest_neighbours(self.embeddings, self.k_max, threads=self.threads)

    @cached_property
    def neighbour_labels(self) -> np.ndarray:
        """Labels of `neighbours`; -1 padding maps to a label no sample has."""
        padded = np.where(self.neighbours >= 0, self.neighbours, 0)
        labels = self.labels[padded]
        return np.where(self.neighbours >= 0, labels, self.labels.min() - 1)

    @cached_property
    def cluster_assignments(self) -> np.ndarray:
        return kmeans_assignments(self.embeddings, self.n_clusters, seed=self.seed, threads=self.threads)
