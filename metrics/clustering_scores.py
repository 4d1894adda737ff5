"""Agreement between the k-means clusters of the queries and their classes: NMI, AMI, pairwise F1.

The clustering is `EvaluationContext.clusters(space)`: k-means with k = the number of classes of the
evaluated split unless `n_clusters` says otherwise (`--kmeans_train_classes` restores the reference's k =
number of training classes). `c_*` variants cluster the L2-normalised embeddings with spherical k-means.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from metrics import REGISTRY, MetricFamily


def nmi(space: str):
    def compute(context, param=None) -> float:
        """NMI(U, V) = I(U; V) / mean(H(U), H(V)) (arithmetic mean, sklearn's default) between the clusters
        U and the classes V (Strehl & Ghosh 2002)."""
        return normalized_mutual_info_score(context.labels, context.clusters(space))
    return compute


def ami(context, param=None) -> float:
    """Adjusted mutual information (Vinh et al. 2010): MI corrected for chance, arithmetic normalisation."""
    return adjusted_mutual_info_score(context.labels, context.clusters("euclidean"))


def _pairs(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1) / 2).sum())


def pair_f1(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Pair-counting F1: with T = same-class pairs, K = same-cluster pairs, TP = pairs in the same class and
    the same cluster, P = TP/K, R = TP/T, F1 = 2PR/(P+R) = 2 TP/(T+K). 1 when both partitions are all
    singletons (nothing to pair, nothing paired wrongly). The reference's value, computed in O(N) from the
    contingency counts instead of its loops over classes and clusters."""
    same_class = _pairs(np.unique(labels, return_counts=True)[1])
    same_cluster = _pairs(np.unique(clusters, return_counts=True)[1])
    both = _pairs(np.unique(np.stack([labels, clusters]), axis=1, return_counts=True)[1])
    if same_class + same_cluster == 0:
        return 1.0
    return 2.0 * both / (same_class + same_cluster)


def f1(space: str):
    def compute(context, param=None) -> float:
        return pair_f1(context.labels, context.clusters(space))
    return compute


REGISTRY.register("nmi")(MetricFamily(compute=nmi("euclidean")))
REGISTRY.register("c_nmi")(MetricFamily(compute=nmi("cosine"), space="cosine"))
REGISTRY.register("ami")(MetricFamily(compute=ami))
REGISTRY.register("f1")(MetricFamily(compute=f1("euclidean")))
REGISTRY.register("c_f1")(MetricFamily(compute=f1("cosine"), space="cosine"))
