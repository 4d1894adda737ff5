"""P@1, MAP@R, R-Precision and NMI equal pytorch-metric-learning's AccuracyCalculator on the same embeddings.

NMI: both sides run faiss k-means with 20 iterations and seed 1234 (PML's default), so the cluster
assignment is the same and the values must be equal.
"""
import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

import metrics
from tests.metrics import oracle

PML_NAMES = {"precision_at_1": "e_recall@1", "mean_average_precision_at_r": "mAP@R", "r_precision": "r_precision",
             "NMI": "nmi"}


def pml(query, query_labels, gallery=None, gallery_labels=None):
    calculator = AccuracyCalculator(include=tuple(PML_NAMES), k="max_bin_count", device=torch.device("cpu"))
    if gallery is None:
        return calculator.get_accuracy(query, query_labels)
    return calculator.get_accuracy(query, query_labels, gallery, gallery_labels, ref_includes_query=False)


def continuous_data(seed, n=400, dim=16, n_classes=40):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    labels[:5] = n_classes + np.arange(5)  # singleton classes
    x = (rng.normal(size=(n_classes + 5, dim))[labels] * 1.5 + rng.normal(size=(n, dim))).astype(np.float32)
    x[10:20] = x[20:30]  # exact duplicates
    return x, labels


@pytest.mark.parametrize("data", ["ties", "continuous"])
@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_leave_one_out_equals_accuracy_calculator(data, backend):
    x, labels = oracle.tie_data(11, n=120) if data == "ties" else continuous_data(0)
    expected = pml(x, labels)
    got = metrics.compute_metrics(x, labels, list(PML_NAMES.values()), seed=1234, backend=backend)
    for theirs, ours in PML_NAMES.items():
        if ours == "nmi" and backend == "torch":
            continue  # the torch k-means draws other initial centroids; see test_backends_agree
        assert got[ours] == pytest.approx(expected[theirs], rel=1e-12, abs=1e-12), ours


def test_query_gallery_equals_accuracy_calculator():
    x, labels = continuous_data(1, n=500)
    query, query_labels, gallery, gallery_labels = x[:150], labels[:150], x[150:], labels[150:]
    expected = pml(query, query_labels, gallery, gallery_labels)
    got = metrics.compute_metrics(query, query_labels, list(PML_NAMES.values()), gallery=gallery,
                                  gallery_labels=gallery_labels, seed=1234)
    for theirs, ours in PML_NAMES.items():
        assert got[ours] == pytest.approx(expected[theirs], rel=1e-12, abs=1e-12), ours
