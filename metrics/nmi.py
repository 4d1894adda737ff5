"""Normalised mutual information between k-means clusters and classes."""
from __future__ import annotations

from sklearn.metrics import normalized_mutual_info_score

from metrics import REGISTRY, MetricFamily


def nmi(context, param=None) -> float:
    """NMI(U, V) = I(U; V) / mean(H(U), H(V)) (arithmetic mean, sklearn's default) between k-means clusters U
    (k = number of classes of the evaluated split unless told otherwise) and the classes V."""
    return normalized_mutual_info_score(context.labels, context.cluster_assignments)


REGISTRY.register("nmi")(MetricFamily(compute=nmi))
