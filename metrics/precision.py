"""Ranking precision: MAP@R and R-Precision (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020)
and the reference's class-averaged truncated mAP family (`mAP_c`, `mAP_1000`, `mAP_lim`), fixed.

For a query q with R_q relevant gallery items, rel_i = 1 when its i-th neighbour is relevant and
P@i = (1/i) sum_{j<=i} rel_j:

* R-Precision(q) = (1/R_q) sum_{i<=R_q} rel_i
* MAP@R(q)       = (1/R_q) sum_{i<=R_q} P@i rel_i
* AP@K(q)        = (1/R_q) sum_{i<=K} P@i rel_i   (truncated average precision; = MAP@R(q) for K = R_q)

`mAP@R` and `r_precision` average over queries, as MLRC and pytorch-metric-learning do. `mAP_c` (K = R_q),
`mAP_1000` (K = 1000) and `mAP_lim` (K = 1023, the old faiss-GPU k limit) are class-averaged (the mean over
classes of the mean over each class's queries), as the reference README states. Fixed from the reference
code (REFERENCE.md §6 item 30): it divided by the class size n_c although only R_q = n_c - 1 relevant items
exist (so a perfect ranking scored (n_c - 1)/n_c), averaged per sample, and when N <= K counted faiss' -1
padding as the last sample's label. Here padding is never relevant and queries with R_q = 0 are left out.
"""
from __future__ import annotations

import numpy as np

from metrics import REGISTRY, MetricFamily
from metrics.recall import retrieval_mean


def _hits(context, space: str, limit) -> tuple:
    """(row, 0-based rank, 1-based hit count so far) of each relevant neighbour ranked below `limit`
    (a number or one per query)."""
    rows, cols = np.nonzero(context.matches(space))
    keep = cols < (limit[rows] if isinstance(limit, np.ndarray) else limit)
    rows, cols = rows[keep], cols[keep]
    per_row = np.bincount(rows, minlength=len(context.labels))
    nth = np.arange(len(rows)) - (np.cumsum(per_row) - per_row)[rows] + 1
    return rows, cols, nth


def average_precision(context, space: str, limit) -> np.ndarray:
    """AP truncated at `limit`, divided by R_q, per query (NaN-free: R_q = 0 gives 0, filtered later)."""
    rows, cols, nth = _hits(context, space, limit)
    summed = np.bincount(rows, weights=nth / (cols + 1.0), minlength=len(context.labels))
    return summed / np.maximum(context.relevant, 1)


def class_mean(context, per_query: np.ndarray) -> float:
    """Mean over classes of the mean over each class's queries (queries with relevant items only)."""
    valid = context.has_relevant
    if not valid.any():
        return float("nan")
    labels = context.labels[valid]
    totals = np.bincount(labels, weights=per_query[valid])
    counts = np.bincount(labels)
    present = counts > 0
    return float(np.mean(totals[present] / counts[present]))


def map_at_r(space: str):
    def compute(context, param=None) -> float:
        return retrieval_mean(context, average_precision(context, space, context.relevant))
    return compute


def r_precision(space: str):
    def compute(context, param=None) -> float:
        rows, _, _ = _hits(context, space, context.relevant)
        found = np.bincount(rows, minlength=len(context.labels))
        return retrieval_mean(context, found / np.maximum(context.relevant, 1))
    return compute


def class_averaged_map(space: str, cutoff):
    def compute(context, param=None) -> float:
        limit = context.relevant if cutoff is None else cutoff
        return class_mean(context, average_precision(context, space, limit))
    return compute


def _only_r(text: str) -> str:
    if text != "R":
        raise ValueError("only mAP@R, with R the number of relevant items of each query")
    return text


REGISTRY.register("mAP")(MetricFamily(compute=map_at_r("euclidean"), knn_k=lambda p, r: r, parse=_only_r,
                                      takes_param=True, param_hint="R"))
REGISTRY.register("r_precision")(MetricFamily(compute=r_precision("euclidean"), knn_k=lambda p, r: r))
for prefix, space in (("", "euclidean"), ("c_", "cosine")):
    for suffix, cutoff in (("c", None), ("1000", 1000), ("lim", 1023)):
        REGISTRY.register(f"{prefix}mAP_{suffix}")(MetricFamily(
            compute=class_averaged_map(space, cutoff), space=space,
            knn_k=(lambda p, r: r) if cutoff is None else (lambda p, r, c=cutoff: c)))
