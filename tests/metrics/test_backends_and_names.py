"""The faiss and torch paths agree; k-means behaviour; metric names, parameters and directions."""
import numpy as np
import pytest
import torch

import metrics
from metrics.clustering import faiss_kmeans, torch_kmeans
from metrics.context import EvaluationContext
from sklearn.metrics import normalized_mutual_info_score
from utilities.errors import UsageError

ALL_KNN = ["e_recall@1", "e_recall@10", "e_recall@100", "c_recall@1", "c_recall@10", "mAP@R", "r_precision",
           "mAP_c", "mAP_1000", "mAP_lim", "c_mAP_c", "c_mAP_1000", "c_mAP_lim"]


def blobs(seed, n_classes=8, per_class=25, dim=12, spread=0.05):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    centres = rng.normal(size=(n_classes, dim))
    return (centres[labels] + spread * rng.normal(size=(len(labels), dim))).astype(np.float32), labels


@pytest.mark.parametrize("gallery", [False, True])
def test_backends_agree_on_every_retrieval_metric(gallery):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 10)).astype(np.float32) * rng.uniform(0.5, 2, (600, 1)).astype(np.float32)
    labels = rng.integers(0, 50, 600)
    kwargs = dict(gallery=x[200:], gallery_labels=labels[200:]) if gallery else {}
    q, ql = (x[:200], labels[:200]) if gallery else (x, labels)
    faiss_values = metrics.compute_metrics(q, ql, ALL_KNN, **kwargs)
    torch_values = metrics.compute_metrics(torch.from_numpy(q), torch.from_numpy(ql), ALL_KNN, backend="torch",
                                           device="cpu", **kwargs)
    # Distances computed by two BLAS libraries may differ in the last bit, which can swap two neighbours whose
    # distances are equal to float precision deep in a 600-long ranking; on exactly representable data
    # (test_metrics_brute_force) the two backends are identical.
    assert torch_values == pytest.approx(faiss_values, rel=1e-5)
    top = ["e_recall@1", "e_recall@10", "c_recall@1", "mAP@R", "r_precision"]
    assert {k: torch_values[k] for k in top} == {k: faiss_values[k] for k in top}


@pytest.mark.parametrize("spherical", [False, True])
def test_backends_find_the_same_clusters_when_they_are_unambiguous(spherical):
    x, labels = blobs(0, n_classes=2, per_class=50)
    for seed in range(3):
        a = faiss_kmeans(x, 2, seed=seed, spherical=spherical)
        b = torch_kmeans(x, 2, seed=seed, spherical=spherical)
        assert normalized_mutual_info_score(a, b) == 1.0 and normalized_mutual_info_score(labels, b) == 1.0
    names = ["nmi", "c_nmi", "f1", "c_f1", "ami"]
    assert metrics.compute_metrics(x, labels, names, backend="torch") == metrics.compute_metrics(x, labels, names)


@pytest.mark.parametrize("spherical", [False, True])
def test_backends_cluster_equally_well_on_average(spherical):
    # With 20 clusters random initialisation matters, and the two backends draw different initial centroids:
    # compare the quality over seeds (the spread of one backend over seeds is about 0.02-0.05).
    scores = {"faiss": [], "torch": []}
    for seed in range(6):
        x, labels = blobs(seed, n_classes=20, per_class=10, spread=0.5)
        for name, kmeans in (("faiss", faiss_kmeans), ("torch", torch_kmeans)):
            scores[name].append(normalized_mutual_info_score(labels, kmeans(x, 20, seed=seed, spherical=spherical)))
    assert abs(np.mean(scores["faiss"]) - np.mean(scores["torch"])) < 0.03


def test_torch_kmeans_is_a_local_optimum_with_every_cluster_used():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    assignment = torch_kmeans(x, 60, seed=0)  # many clusters: empty ones must be re-seeded
    assert len(np.unique(assignment)) >= 57
    centroids = np.stack([x[assignment == c].mean(0) for c in np.unique(assignment)])
    nearest = ((x[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (np.unique(assignment)[nearest] == assignment).mean() > 0.95
    assert (torch_kmeans(x, 60, seed=0) == assignment).all()


def test_cosine_clustering_ignores_the_norms_and_euclidean_does_not():
    x, labels = blobs(3, spread=0.4)
    scaled = x * np.random.default_rng(0).uniform(0.2, 5.0, (len(x), 1)).astype(np.float32)
    names = ["c_nmi", "c_f1", "c_recall@1", "c_mAP_c"]
    assert metrics.compute_metrics(scaled, labels, names, seed=2) == metrics.compute_metrics(x, labels, names, seed=2)
    assert metrics.compute_metrics(scaled, labels, ["nmi"], seed=2) != metrics.compute_metrics(x, labels, ["nmi"], seed=2)


def test_k_means_uses_the_classes_of_the_split_unless_told():
    x, labels = blobs(1, n_classes=6)
    assert EvaluationContext(x, labels).n_clusters == 6
    assert EvaluationContext(x, labels, n_clusters=9).n_clusters == 9
    assert len(np.unique(EvaluationContext(x, labels, n_clusters=9).clusters())) == 9
    x, labels = blobs(1, n_classes=2)
    assert metrics.compute_metrics(x, labels, ["nmi"]) == {"nmi": 1.0}
    assert metrics.compute_metrics(x, labels, ["nmi"], n_clusters=4)["nmi"] < 0.9


def test_metrics_are_seeded_and_accept_tensors():
    x, labels = blobs(4, spread=1.0)
    names = ["nmi", "e_recall@1", "mAP@R"]
    a = metrics.compute_metrics(x, labels, names, seed=5)
    assert a == metrics.compute_metrics(torch.from_numpy(x), torch.from_numpy(labels), names, seed=5)


@pytest.mark.parametrize("bad,message", [
    ("recall@1", "unknown metric 'recall@1'; choose from: ami, c_f1, c_mAP_1000"),
    ("e_recall@0", "cannot read the parameter of 'e_recall@0'"),
    ("e_recall", "unknown metric 'e_recall'"),
    ("nmi@3", "unknown metric 'nmi@3'"),
    ("mAP@10", "cannot read the parameter of 'mAP@10' (only mAP@R"),
    ("dists@mean", "(choose one of intra, inter, intra_over_inter)"),
    ("rho_spectrum@0", "rho_spectrum@0 is the singular-value histogram, not a number"),
])
def test_bad_metric_names_say_what_to_use(bad, message):
    with pytest.raises(UsageError) as err:
        metrics.check_names([bad])
    assert message in str(err.value)


def test_every_listed_choice_is_accepted():
    with pytest.raises(UsageError) as err:
        metrics.check_names(["nope"])
    listed = str(err.value).split("choose from: ")[1].split(", ")
    assert {"e_recall@k", "c_recall@k", "mAP@R", "r_precision", "nmi", "c_nmi", "ami", "f1", "c_f1", "mAP_c",
            "mAP_1000", "mAP_lim", "c_mAP_c", "c_mAP_1000", "c_mAP_lim", "rho_spectrum@m",
            "dists@intra|inter|intra_over_inter"} == set(listed)


def test_directions_for_best_values():
    up = ["e_recall@1", "mAP@R", "r_precision", "nmi", "ami", "f1", "mAP_1000", "dists@inter"]
    down = ["dists@intra", "dists@intra_over_inter", "rho_spectrum@1", "rho_spectrum@-2"]
    assert all(metrics.higher_is_better(n) for n in up) and not any(metrics.higher_is_better(n) for n in down)


def test_broken_inputs_are_named():
    x = np.zeros((4, 3), dtype=np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="embeddings contain NaN or infinite values"):
        metrics.compute_metrics(x, [0, 0, 1, 1], ["e_recall@1"])
    with pytest.raises(ValueError, match="got 4 embeddings but 3 labels"):
        metrics.compute_metrics(np.zeros((4, 3)), [0, 0, 1], ["e_recall@1"])
    with pytest.raises(ValueError, match="rho_spectrum@5: the embeddings have only 3 singular values"):
        metrics.compute_metrics(np.eye(4, 3), [0, 0, 1, 1], ["rho_spectrum@5"])
