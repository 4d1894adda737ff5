"""Retrieval and clustering metrics: `compute_metrics(embeddings, labels, names, **options) -> {name: value}`.

Works on numpy arrays or tensors, with no model and no run folder. Shared work is done once per call: one
exact nearest-neighbour search up to the largest k any requested metric needs (each query's own index
removed by index, not by dropping column 0) and one k-means per clustering.

A metric family registers a `MetricFamily` under its prefix (`e_recall` for `e_recall@k`); the part after
'@' is its parameter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Sequence

import numpy as np

from utilities.errors import UsageError
from utilities.registry import Registry


@dataclass(frozen=True)
class MetricFamily:
    """`compute(context, param) -> float`; `knn_k(param)` is how many neighbours it needs (0: none);
    `parse(text)` turns the text after '@' into the parameter (None when the name has no '@');
    `higher_is_better` orders values for "best" checkpoints and summaries."""

    compute: Callable
    knn_k: Callable = lambda param: 0
    parse: Callable = lambda text: None
    higher_is_better: bool = True
    takes_param: bool = False


REGISTRY: Registry = Registry("metric", "--evaluation_metrics")


def split_name(name: str):
    """'e_recall@4' -> ('e_recall', family, parsed param); raises UsageError for unknown or malformed names."""
    prefix, _, text = name.partition("@")
    family = REGISTRY.get(prefix)
    if family is None or family.takes_param != bool(text):
        choices = ", ".join(f"{n}@k" if f.takes_param else n for n, f in sorted(REGISTRY.items()))
        raise UsageError(f"--evaluation_metrics: unknown metric '{name}'; choose from: {choices}")
    try:
        param = family.parse(text) if text else None
    except ValueError:
        raise UsageError(f"--evaluation_metrics: cannot read the parameter of '{name}'") from None
    return prefix, family, param


def check_names(names: Iterable[str], flag: str = "--evaluation_metrics") -> None:
    for name in names:
        split_name(name)


def higher_is_better(name: str) -> bool:
    return split_name(name)[1].higher_is_better


def compute_metrics(embeddings, labels, names: Sequence[str], *, n_clusters: Optional[int] = None, seed: int = 0,
                    threads: Optional[int] = None) -> Dict[str, float]:
    """Compute `names` on `embeddings` (N x D) with class `labels` (N,), every sample a query against the rest.

    Options: `n_clusters` for the clustering metrics (default: the number of distinct labels), `seed` of
    the k-means, `threads` for faiss.
    """
    from metrics.context import EvaluationContext

    parsed = [(name, *split_name(name)) for name in names]
    k_max = max((family.knn_k(param) for _, _, family, param in parsed), default=0)
    context = EvaluationContext(_as_numpy(embeddings), _as_numpy(labels).reshape(-1), k_max=k_max,
                                n_clusters=n_clusters, seed=seed, threads=threads)
    return {name: float(family.compute(context, param)) for name, _, family, param in parsed}


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


# Importing the family modules fills REGISTRY.
from metrics import nmi, recall  # noqa: E402,F401
