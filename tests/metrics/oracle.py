"""Slow, obviously-correct numpy computations of every metric, one query and one pair at a time.

Ranking convention: by distance, ties by the smaller gallery index (the project's documented order).
`tie_data` makes embeddings whose distances are exact in float32 (entries in {-1, 0, 1} times 1, 2 or 4,
exactly four non-zeros per row, so L2 normalisation is exact too): many exact ties, exact duplicates
across and within classes, and singleton classes.
"""
from __future__ import annotations

import itertools
import math

import numpy as np


def tie_data(seed: int, n: int = 70, dim: int = 6, n_classes: int = 9, n_singletons: int = 3):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, dim), dtype=np.float32)
    for row in x:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    x *= rng.choice([1.0, 2.0, 4.0], (n, 1)).astype(np.float32)
    labels = rng.integers(0, n_classes, n)
    labels[:n_singletons] = n_classes + np.arange(n_singletons)  # classes with one sample
    for src, dst in rng.choice(n, (8, 2), replace=False):  # exact duplicates, some of another class
        x[dst] = x[src]
    return x, labels


def distances(query, gallery, space):
    q, g = np.asarray(query, np.float64), np.asarray(gallery, np.float64)
    if space == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
    return ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)


def rankings(query, labels, gallery=None, gallery_labels=None, space="euclidean"):
    """Per query: (label list of the gallery ranked canonically, number of relevant items)."""
    loo = gallery is None
    gallery, gallery_labels = (query, labels) if loo else (gallery, gallery_labels)
    d = distances(query, gallery, space)
    out = []
    for i in range(len(query)):
        candidates = [j for j in range(len(gallery)) if not (loo and j == i)]
        candidates.sort(key=lambda j: (d[i, j], j))
        ranked = [gallery_labels[j] for j in candidates]
        out.append((ranked, sum(lab == labels[i] for lab in ranked)))
    return out


def recall(ranks, labels, k):
    hits = [any(lab == labels[i] for lab in ranked[:k]) for i, (ranked, r) in enumerate(ranks) if r > 0]
    return float(np.mean(hits)) if hits else math.nan


def ap(ranked, label, r, cutoff):
    total, found = 0.0, 0
    for i, lab in enumerate(ranked[:cutoff]):
        if lab == label:
            found += 1
            total += found / (i + 1)
    return total / r


def map_at_r(ranks, labels):
    values = [ap(ranked, labels[i], r, r) for i, (ranked, r) in enumerate(ranks) if r > 0]
    return float(np.mean(values)) if values else math.nan


def r_precision(ranks, labels):
    values = [sum(lab == labels[i] for lab in ranked[:r]) / r for i, (ranked, r) in enumerate(ranks) if r > 0]
    return float(np.mean(values)) if values else math.nan


def class_averaged_map(ranks, labels, cutoff=None):
    per_class = {}
    for i, (ranked, r) in enumerate(ranks):
        if r > 0:
            per_class.setdefault(labels[i], []).append(ap(ranked, labels[i], r, r if cutoff is None else cutoff))
    return float(np.mean([np.mean(v) for v in per_class.values()])) if per_class else math.nan


def nmi(labels, clusters):
    n = len(labels)

    def entropy(v):
        p = np.unique(v, return_counts=True)[1] / n
        return -(p * np.log(p)).sum()

    mi = 0.0
    for a in np.unique(labels):
        for b in np.unique(clusters):
            joint = np.sum((labels == a) & (clusters == b)) / n
            if joint > 0:
                mi += joint * np.log(joint / (np.mean(labels == a) * np.mean(clusters == b)))
    h = (entropy(labels) + entropy(clusters)) / 2
    return 1.0 if h == 0 else mi / h


def pair_f1(labels, clusters):
    tp = same_class = same_cluster = 0
    for i, j in itertools.combinations(range(len(labels)), 2):
        c, k = labels[i] == labels[j], clusters[i] == clusters[j]
        same_class += c
        same_cluster += k
        tp += c and k
    if same_class + same_cluster == 0:
        return 1.0
    precision, rec = tp / same_cluster, tp / same_class
    return 0.0 if tp == 0 else 2 * precision * rec / (precision + rec)


def cosine_distance(a, b):
    return 1.0 - float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def dists_intra(x, labels):
    per_class = []
    for c in np.unique(labels):
        members = x[labels == c].astype(np.float64)
        if len(members) > 1:
            pairs = [cosine_distance(members[i], members[j])
                     for i in range(len(members)) for j in range(len(members)) if i != j]
            per_class.append(np.mean(pairs))
    return float(np.mean(per_class)) if per_class else math.nan


def dists_inter(x, labels):
    centres = [x[labels == c].astype(np.float64).mean(0) for c in np.unique(labels)]
    pairs = [cosine_distance(centres[i], centres[j])
             for i in range(len(centres)) for j in range(len(centres)) if i != j]
    return float(np.mean(pairs)) if pairs else math.nan


def rho_spectrum(x, m):
    s = np.sort(np.sqrt(np.clip(np.linalg.eigvalsh(x.T.astype(np.float64) @ x.astype(np.float64)), 0, None)))[::-1]
    s = s[: min(x.shape)][abs(m) - 1:]
    p = s / s.sum()
    u = np.ones(len(s)) / len(s)
    if m > 0:
        return float(sum(ui * math.log(ui / pi) for ui, pi in zip(u, p)))
    return float(sum(pi * math.log(pi / ui) for ui, pi in zip(u, p) if pi > 0))
