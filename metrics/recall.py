"""Recall@k as DML papers define it (Musgrave et al. 2020 call it P@1 for k = 1)."""
from __future__ import annotations

import numpy as np

from metrics import REGISTRY, MetricFamily


def recall_at_k(context, k: int) -> float:
    """Fraction of queries with at least one same-label sample among their k nearest other samples
    (Euclidean on the embeddings as given). k >= N counts all other samples."""
    hits = context.neighbour_labels[:, :k] == context.labels[:, None]
    return float(np.mean(hits.any(1)))


def _positive_int(text: str) -> int:
    k = int(text)
    if k < 1:
        raise ValueError(text)
    return k


REGISTRY.register("e_recall")(MetricFamily(compute=recall_at_k, knn_k=lambda k: k, parse=_positive_int,
                                           takes_param=True))
