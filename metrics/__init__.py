"""Retrieval and clustering metrics: `compute_metrics(embeddings, labels, names, **options) -> {name: value}`.

Works on numpy arrays or tensors, with no model and no run folder. Shared work is done once per call: per
space (Euclidean, cosine) one exact nearest-neighbour search up to the largest k any requested metric
needs, streamed in chunks (memory O(N k)), and one k-means per clustering (see `metrics.context`; Recall@k
searches deeper only for the queries that the shared list does not settle).
docs/metrics.md defines every metric and where it deliberately differs from the reference code.

A metric family registers a `MetricFamily` under its prefix (`e_recall` for `e_recall@k`); the part after
'@' is its parameter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Sequence, Union

import numpy as np

from utilities.errors import UsageError
from utilities.registry import Registry


@dataclass(frozen=True)
class MetricFamily:
    """`compute(context, param) -> float`.

    `knn_k(param, max_relevant)`: how many neighbours in `space` it needs (0: none), given the largest
    number of relevant items of any query; with `first_hit_only` it reads only each query's first relevant
    rank below that k (`EvaluationContext.first_hit`), not the whole list. `parse(text)` turns the text after '@' into the parameter
    (`param_hint` names it in error messages). `higher_is_better` (a bool, or a function of the parameter)
    orders values for "best" checkpoints and summaries.
    """

    compute: Callable
    knn_k: Callable = lambda param, max_relevant: 0
    first_hit_only: bool = False
    space: str = "euclidean"
    parse: Callable = lambda text: None
    higher_is_better: Union[bool, Callable] = True
    takes_param: bool = False
    param_hint: str = "k"


REGISTRY: Registry = Registry("metric", "--evaluation_metrics")


def split_name(name: str):
    """'e_recall@4' -> ('e_recall', family, parsed param); raises UsageError for unknown or malformed names."""
    prefix, _, text = name.partition("@")
    family = REGISTRY.get(prefix)
    if family is None or family.takes_param != bool(text):
        choices = ", ".join(f"{n}@{f.param_hint}" if f.takes_param else n for n, f in sorted(REGISTRY.items()))
        raise UsageError(f"--evaluation_metrics: unknown metric '{name}'; choose from: {choices}")
    try:
        param = family.parse(text) if text else None
    except ValueError as err:
        detail = f" ({err})" if str(err) and str(err) != text else ""
        raise UsageError(f"--evaluation_metrics: cannot read the parameter of '{name}'{detail}") from None
    return prefix, family, param


def check_names(names: Iterable[str], flag: str = "--evaluation_metrics") -> None:
    for name in names:
        split_name(name)


def higher_is_better(name: str) -> bool:
    _, family, param = split_name(name)
    direction = family.higher_is_better
    return bool(direction(param) if callable(direction) else direction)


def compute_metrics(embeddings, labels, names: Sequence[str], *, gallery=None, gallery_labels=None,
                    n_clusters: Optional[int] = None, seed: int = 0, threads: Optional[int] = None,
                    backend: str = "faiss", device=None) -> Dict[str, float]:
    """Compute `names` on `embeddings` (N x D) with class `labels` (N,).

    Without a gallery every sample is a query against all the others; with `gallery` (M x D) and
    `gallery_labels` (M,) the embeddings are queries retrieved from the gallery (same label = relevant).
    Options: `n_clusters` for the clustering metrics (default: the number of distinct query labels),
    `seed` of the k-means, `threads` for faiss, `backend` "faiss" (CPU), "torch" or "faiss_gpu" with a torch
    `device`. The torch-based backends search tensors where they are (no copy to the host and back).
    """
    from metrics.context import EvaluationContext

    parsed = [(name, *split_name(name)) for name in names]
    features = (lambda x: x) if backend in TENSOR_BACKENDS else as_numpy
    context = EvaluationContext(features(embeddings), as_numpy(labels), features(gallery),
                                as_numpy(gallery_labels), n_clusters=n_clusters, seed=seed, threads=threads,
                                backend=backend, device=device)
    for _, _, family, param in parsed:
        k = family.knn_k(param, context.max_relevant)
        if k > 0:
            request = context.request_first_hit if family.first_hit_only else context.request_neighbours
            request(family.space, k)
    return {name: float(family.compute(context, param)) for name, _, family, param in parsed}


#: Backends whose neighbour search takes torch tensors on their device.
TENSOR_BACKENDS = ("torch", "faiss_gpu")


def gpu_backend() -> str:
    """The backend for embeddings on a GPU: `faiss_gpu` when a faiss-gpu build is installed, else `torch`."""
    from metrics.backends import faiss_gpus

    return "faiss_gpu" if faiss_gpus() > 0 else "torch"


def as_numpy(x):
    """A numpy array from a numpy array, a list or a tensor on any device; None stays None."""
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def positive_int(text: str) -> int:
    k = int(text)
    if k < 1:
        raise ValueError(text)
    return k


# Importing the family modules fills REGISTRY.
from metrics import clustering_scores, dists, precision, recall, rho_spectrum  # noqa: E402,F401
