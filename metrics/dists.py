"""Embedding-space density (Roth et al., "Revisiting Training Strategies and Generalization Performance in
Deep Metric Learning", ICML 2020): mean intra-class and inter-class cosine distances and their ratio.

With x_hat = x / ||x|| and cosine distance d(a, b) = 1 - a_hat . b_hat:

* `dists@intra` = mean over classes with >= 2 samples of the mean d over the class's ordered pairs i != j;
* `dists@inter` = mean d over pairs of distinct class centres, a centre being the mean of the class's
  embeddings (as given), normalised;
* `dists@intra_over_inter` = intra / max(inter, 1e-8) (the paper's pi_ratio).

The pair sums use sum_{i != j} a_i . a_j = ||sum_i a_i||^2 - sum_i ||a_i||^2, so the cost is O(N D), not one
matrix per class. Fixed from the reference (REFERENCE.md §6 item 29): a singleton class has no pair and is
left out of the intra mean (the reference's NaN replacement indexed with a 0/1 mask and took the maximum
over elements 0 and 1). NaN when no class (intra) or fewer than two classes (inter) qualify.
Computed on the queries. Directions for "best": intra and the ratio lower, inter higher.
"""
from __future__ import annotations

import numpy as np

from metrics import REGISTRY, MetricFamily


def _mean_pair_cosine_distance(vectors: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per group, the mean cosine distance over ordered pairs of distinct members (NaN for singletons)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    n_groups = int(groups.max()) + 1
    sums = np.zeros((n_groups, unit.shape[1]))
    np.add.at(sums, groups, unit)
    sq_norms = np.bincount(groups, weights=(unit * unit).sum(1), minlength=n_groups)
    sizes = np.bincount(groups, minlength=n_groups).astype(np.float64)
    pairs = sizes * (sizes - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - ((sums * sums).sum(1) - sq_norms) / pairs


def intra(context) -> float:
    per_class = _mean_pair_cosine_distance(context.query, context.labels)
    per_class = per_class[np.isfinite(per_class)]
    return float(per_class.mean()) if len(per_class) else float("nan")


def inter(context) -> float:
    n_classes = int(context.labels.max()) + 1
    centres = np.zeros((n_classes, context.query.shape[1]))
    np.add.at(centres, context.labels, context.query.astype(np.float64))
    present = np.bincount(context.labels, minlength=n_classes) > 0
    centres = centres[present]
    if len(centres) < 2:
        return float("nan")
    return float(_mean_pair_cosine_distance(centres, np.zeros(len(centres), dtype=np.int64))[0])


MODES = {
    "intra": (intra, False),
    "inter": (inter, True),
    "intra_over_inter": (lambda context: intra(context) / max(inter(context), 1e-8), False),
}


def _mode(text: str) -> str:
    if text not in MODES:
        raise ValueError(f"choose one of {', '.join(MODES)}")
    return text


REGISTRY.register("dists")(MetricFamily(compute=lambda context, mode: MODES[mode][0](context), parse=_mode,
                                        takes_param=True, param_hint="intra|inter|intra_over_inter",
                                        higher_is_better=lambda mode: MODES[mode][1]))
