"""Recall@k as DML papers define it (Musgrave et al. 2020 call it P@1 for k = 1)."""
from __future__ import annotations

import numpy as np

from metrics import REGISTRY, MetricFamily, positive_int


def retrieval_mean(context, per_query: np.ndarray) -> float:
    """Mean over the queries that have at least one relevant item; NaN when none has."""
    valid = context.has_relevant
    return float(per_query[valid].mean()) if valid.any() else float("nan")


def recall_at_k(space: str):
    def compute(context, k: int) -> float:
        """Fraction of queries with at least one same-label sample among their k nearest gallery samples
        (k beyond the gallery counts every candidate). Queries without any relevant sample are left out (the
        reference counted them as misses; the standard benchmarks have none)."""
        return retrieval_mean(context, context.first_hit(space) < k)

    return compute


REGISTRY.register("e_recall")(MetricFamily(compute=recall_at_k("euclidean"), knn_k=lambda k, r: k, first_hit_only=True,
                                           parse=positive_int, takes_param=True))
REGISTRY.register("c_recall")(MetricFamily(compute=recall_at_k("cosine"), knn_k=lambda k, r: k, first_hit_only=True,
                                           space="cosine", parse=positive_int, takes_param=True))
