"""Every metric against the brute-force oracle, on data with exact ties, duplicates, singleton classes and
N smaller than the requested k, for both backends (the torch one on CPU tensors)."""
import math

import numpy as np
import pytest

import metrics
from metrics import neighbours
from metrics.context import EvaluationContext
from tests.metrics import oracle

KNN_NAMES = ["e_recall@1", "e_recall@2", "e_recall@4", "e_recall@8", "e_recall@1000", "c_recall@1", "c_recall@4",
             "mAP@R", "r_precision", "mAP_c", "mAP_1000", "mAP_lim", "c_mAP_c", "c_mAP_1000", "c_mAP_lim"]
GEOMETRY_NAMES = ["dists@intra", "dists@inter", "dists@intra_over_inter", "rho_spectrum@1", "rho_spectrum@2",
                  "rho_spectrum@-1", "rho_spectrum@-3"]
CLUSTER_NAMES = ["nmi", "c_nmi", "ami", "f1", "c_f1"]


def expected_knn(x, labels, gallery=None, gallery_labels=None):
    out = {}
    for prefix, space in (("e_", "euclidean"), ("c_", "cosine")):
        ranks = oracle.rankings(x, labels, gallery, gallery_labels, space)
        for k in (1, 2, 4, 8, 1000):
            out[f"{prefix}recall@{k}"] = oracle.recall(ranks, labels, k)
        short = "" if prefix == "e_" else prefix
        out[f"{short}mAP_c"] = oracle.class_averaged_map(ranks, labels)
        out[f"{short}mAP_1000"] = oracle.class_averaged_map(ranks, labels, 1000)
        out[f"{short}mAP_lim"] = oracle.class_averaged_map(ranks, labels, 1023)
        if prefix == "e_":
            out["mAP@R"] = oracle.map_at_r(ranks, labels)
            out["r_precision"] = oracle.r_precision(ranks, labels)
    return out


def leave_one_out_neighbours(x, k):
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.concatenate([found for _, found in neighbours.faiss_neighbours(x, x, k, self_index=np.arange(len(x)))])


def assert_equal(got, expected, names):
    for name in names:
        if math.isnan(expected[name]):
            assert math.isnan(got[name]), name
        else:
            assert got[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("seed", range(3))
def test_retrieval_and_geometry_metrics_match_brute_force(seed, backend):
    x, labels = oracle.tie_data(seed)
    got = metrics.compute_metrics(x, labels, KNN_NAMES + GEOMETRY_NAMES, backend=backend)
    expected = expected_knn(x, labels)
    expected.update({"dists@intra": oracle.dists_intra(x, labels), "dists@inter": oracle.dists_inter(x, labels)})
    expected["dists@intra_over_inter"] = expected["dists@intra"] / expected["dists@inter"]
    for m in (1, 2, -1, -3):
        expected[f"rho_spectrum@{m}"] = oracle.rho_spectrum(x, m)
    assert_equal(got, expected, KNN_NAMES + GEOMETRY_NAMES)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_query_gallery_metrics_match_brute_force(backend):
    x, labels = oracle.tie_data(7, n=90)
    query, query_labels, gallery, gallery_labels = x[:30], labels[:30], x[30:], labels[30:]
    query_labels[0] = 99  # a query whose item is not in the gallery
    got = metrics.compute_metrics(query, query_labels, KNN_NAMES, gallery=gallery, gallery_labels=gallery_labels,
                                  backend=backend)
    assert_equal(got, expected_knn(query, query_labels, gallery, gallery_labels), KNN_NAMES)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_clustering_metrics_match_brute_force_on_the_same_assignment(backend):
    x, labels = oracle.tie_data(3, n=60)
    x = x + np.random.default_rng(0).normal(0, 0.1, x.shape).astype(np.float32)
    got = metrics.compute_metrics(x, labels, CLUSTER_NAMES, seed=4, backend=backend)
    context = EvaluationContext(x, labels, seed=4, backend=backend)
    codes = np.unique(labels, return_inverse=True)[1]
    for name, space in (("nmi", "euclidean"), ("c_nmi", "cosine")):
        assert got[name] == pytest.approx(oracle.nmi(codes, context.clusters(space)), abs=1e-10)
    for name, space in (("f1", "euclidean"), ("c_f1", "cosine")):
        assert got[name] == pytest.approx(oracle.pair_f1(codes, context.clusters(space)), abs=1e-12)
    from sklearn.metrics import adjusted_mutual_info_score
    assert got["ami"] == pytest.approx(adjusted_mutual_info_score(codes, context.clusters("euclidean")))


def test_pair_f1_hand_worked():
    labels = np.array([0, 0, 0, 1, 1])
    clusters = np.array([5, 5, 7, 7, 7])
    # same-class pairs {01,02,12,34} = 4; same-cluster pairs {01,23,24,34} = 4; both {01,34} = 2.
    assert metrics.clustering_scores.pair_f1(labels, clusters) == pytest.approx(2 * 2 / (4 + 4))
    assert metrics.clustering_scores.pair_f1(np.arange(4), np.arange(4)) == 1.0


def test_hand_worked_map_at_r_with_padding_and_a_lone_query():
    # 1-d points; class 0 = {0, 1, 5}, class 1 = {2, 3}; class 2 is a singleton.
    x = np.array([[0.0], [1.0], [2.5], [2.0], [9.0], [4.0]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1, 2, 0])
    got = metrics.compute_metrics(x, labels, ["mAP@R", "r_precision", "mAP_1000", "e_recall@1"])
    # query 0 (R=2): ranking 1(+), 3, 2, 5(+) -> MAP@R = (1/1)/2 = 0.5; RP = 1/2
    # query 1 (R=2): ranking 0(+) or 3 tie at 1 -> 0 (smaller index) first, then 3; MAP@R = 0.5; RP = 0.5
    # query 5 (R=2): ranking 2, 3, 1(+), 0(+) -> MAP@R = 0 ; AP@1000 = (1/3 + 2/4)/2
    # query 2 (R=1): 3(+) -> 1 ; query 3 (R=1): 2(+) -> 1 ; query 4 is lone and left out.
    assert got["mAP@R"] == pytest.approx((0.5 + 0.5 + 0 + 1 + 1) / 5)
    assert got["r_precision"] == pytest.approx((0.5 + 0.5 + 0 + 1 + 1) / 5)
    ap0 = (1 + 2 / 4) / 2          # query 0: hits at ranks 1 and 4
    ap1 = (1 + 2 / 4) / 2          # query 1: 0(+), 3, 2, 5(+)
    ap5 = (1 / 3 + 2 / 4) / 2
    assert got["mAP_1000"] == pytest.approx(((ap0 + ap1 + ap5) / 3 + 1.0) / 2)
    assert got["e_recall@1"] == pytest.approx(4 / 5)


def test_all_lone_queries_give_nan_not_an_error():
    x = np.eye(4, dtype=np.float32)
    got = metrics.compute_metrics(x, [0, 1, 2, 3], ["e_recall@1", "mAP@R", "mAP_c", "dists@intra", "f1"])
    assert math.isnan(got["e_recall@1"]) and math.isnan(got["mAP@R"]) and math.isnan(got["mAP_c"])
    assert math.isnan(got["dists@intra"]) and got["f1"] == 1.0


def test_canonical_topk_reselects_tied_rows_by_index():
    import torch
    dist = torch.tensor([[3.0, 1.0, 1.0, 1.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])
    assert neighbours.canonical_topk(dist, 3).tolist() == [[4, 1, 2], [0, 1, 2]]


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_chunked_search_equals_one_search(monkeypatch, backend):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(700, 8)).astype(np.float32)
    labels = rng.integers(0, 30, 700)
    names = ["e_recall@1", "e_recall@50", "mAP@R", "mAP_1000"]
    whole = metrics.compute_metrics(x, labels, names, backend=backend)
    monkeypatch.setattr(neighbours, "FAISS_CHUNK_BYTES", 1)  # 4096-row floor: 1 chunk at N=700 ...
    monkeypatch.setattr(neighbours, "TORCH_CHUNK_BYTES", {"cpu": 16 * 700 * 33})  # ... 33 rows per chunk
    assert metrics.compute_metrics(x, labels, names, backend=backend) == whole
    context = EvaluationContext(x, labels, backend=backend)
    context.request_neighbours("euclidean", 1000)
    assert context.matches("euclidean").dtype == bool and context.matches("euclidean").shape == (700, 1000)


def test_faiss_chunks_remove_self_with_the_chunk_offset(monkeypatch):
    x, _ = oracle.tie_data(1, n=9000, dim=8)
    monkeypatch.setattr(neighbours, "FAISS_CHUNK_BYTES", 1)  # 4096-row chunks
    found = leave_one_out_neighbours(x, 3)
    assert not (found == np.arange(len(x))[:, None]).any()
    d = ((x[:40, None, :] - x[None, :, :]) ** 2).sum(-1)
    for i in range(40):
        others = [j for j in np.lexsort((np.arange(len(x)), d[i])) if j != i][:3]
        assert found[i].tolist() == others


def test_remove_self_when_duplicates_push_self_out_of_the_list():
    searched = np.array([[1, 2, 0], [2, 0, 3]])  # row 1 does not contain 1: drop its last column
    np.testing.assert_array_equal(neighbours.remove_self(searched, 2, np.arange(2)), [[1, 2], [2, 0]])


def test_neighbours_are_padded_when_k_exceeds_the_other_samples():
    nn = leave_one_out_neighbours(np.eye(3), 4)
    assert nn.shape == (3, 4) and (nn[:, 2:] == -1).all() and all(i not in nn[i, :2] for i in range(3))


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_recall_beyond_the_short_list_searches_only_the_unsettled_queries_deeper(backend):
    # Query 0 at 0 has its only same-class sample at 200, behind 150 samples of other classes; every other
    # sample has a same-class neighbour next to it.
    x = np.concatenate([[0.0, 200.0], np.repeat(np.arange(1.0, 76.0), 2)]).astype(np.float32)[:, None]
    labels = np.concatenate([[0, 0], np.repeat(np.arange(1, 76), 2)])
    got = metrics.compute_metrics(x, labels, ["e_recall@1", "e_recall@150", "e_recall@151", "e_recall@1000"],
                                  backend=backend)
    n = len(x)
    # Query 1 (at 200) also finds query 0 only after the 150 others; everyone else at rank 0.
    assert got == {"e_recall@1": (n - 2) / n, "e_recall@150": (n - 2) / n, "e_recall@151": 1.0, "e_recall@1000": 1.0}
    context = EvaluationContext(x, labels, backend=backend)
    context.request_first_hit("euclidean", 1000)
    assert context.matches("euclidean").shape == (n, 32)
    assert context.first_hit("euclidean")[:3].tolist() == [150, 150, 0]
