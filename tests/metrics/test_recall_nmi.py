"""Recall@k and NMI against brute-force numpy computations."""
import numpy as np
import pytest
import torch

import metrics
from metrics.context import EvaluationContext
from metrics.neighbours import nearest_neighbours, remove_self
from utilities.errors import UsageError


def brute_recall(x, labels, k):
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    hits = 0
    for i in range(len(x)):
        order = np.argsort(d[i], kind="stable")[: min(k, len(x) - 1)]
        hits += np.any(labels[order] == labels[i])
    return hits / len(x)


def brute_nmi(labels, clusters):
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
    return mi / ((entropy(labels) + entropy(clusters)) / 2)


@pytest.mark.parametrize("seed", range(4))
def test_recall_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    labels = rng.integers(0, 7, 60)
    names = ["e_recall@1", "e_recall@2", "e_recall@4", "e_recall@16"]
    got = metrics.compute_metrics(x, labels, names)
    for name in names:
        assert got[name] == pytest.approx(brute_recall(x, labels, int(name.split("@")[1])), abs=1e-12)


def test_recall_with_k_beyond_n_counts_every_other_sample():
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    labels = np.array([0, 0, 1, 2, 3])
    got = metrics.compute_metrics(x, labels, ["e_recall@1000"])
    assert got["e_recall@1000"] == pytest.approx(0.4)


def test_exact_duplicates_do_not_count_the_query_itself():
    # Samples 0 and 1 are identical but of different classes; sample 0's only same-class mate is far away.
    x = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [0.1, 0.0]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1])
    got = metrics.compute_metrics(x, labels, ["e_recall@1"])
    # 0 -> 1 (wrong); 1 -> 0 (wrong); 2 -> 3 (wrong); 3 -> 0 or 1 at equal distance (tie).
    assert got["e_recall@1"] in (0.0, 0.25)
    ctx = EvaluationContext(x, labels, k_max=3, n_clusters=None, seed=0, threads=None)
    for i, row in enumerate(ctx.neighbours):
        assert i not in row and sorted(row.tolist()) == sorted(set(range(4)) - {i})


def test_remove_self_when_duplicates_push_self_out_of_the_list():
    searched = np.array([[1, 2, 0], [2, 0, 3]])  # row 1 does not contain 1: drop its last column
    np.testing.assert_array_equal(remove_self(searched, 2), [[1, 2], [2, 0]])


def test_neighbours_are_padded_when_k_exceeds_the_other_samples():
    x = np.eye(3, dtype=np.float32)
    nn = nearest_neighbours(x, 4)
    assert nn.shape == (3, 4) and (nn[:, 2:] == -1).all() and all(i not in nn[i, :2] for i in range(3))


def test_nmi_matches_brute_force_on_the_same_clusters(monkeypatch):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 8)) * 4
    labels = np.repeat(np.arange(6), 10)
    x = (centers[labels] + rng.normal(size=(60, 8))).astype(np.float32)
    got = metrics.compute_metrics(x, labels, ["nmi"], seed=3)
    ctx = EvaluationContext(x, labels, k_max=0, n_clusters=None, seed=3, threads=None)
    assert len(np.unique(ctx.cluster_assignments)) <= 6 and ctx.n_clusters == 6
    assert got["nmi"] == pytest.approx(brute_nmi(labels, ctx.cluster_assignments), abs=1e-10)
    assert got["nmi"] > 0.9


def test_nmi_uses_as_many_clusters_as_classes_and_is_seeded():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 4)).astype(np.float32)
    labels = rng.integers(0, 9, 90)
    a = metrics.compute_metrics(x, labels, ["nmi"], seed=5)
    b = metrics.compute_metrics(torch.from_numpy(x), torch.from_numpy(labels), ["nmi"], seed=5)
    assert a == b
    ctx = EvaluationContext(x, labels, k_max=0, n_clusters=None, seed=5, threads=None)
    assert ctx.n_clusters == len(np.unique(labels))


@pytest.mark.parametrize("bad", ["recall@1", "e_recall@0", "e_recall@x", "e_recall", "nmi@3"])
def test_unknown_metric_names_list_the_choices(bad):
    with pytest.raises(UsageError, match=r"choose from: e_recall@k, nmi|cannot read"):
        metrics.check_names([bad])
