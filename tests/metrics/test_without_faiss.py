"""The torch backend needs no faiss (the GPU machine has none) and takes tensors where they are."""
import sys

import numpy as np
import pytest
import torch

import metrics

NAMES = ["e_recall@1", "e_recall@4", "nmi", "mAP@R", "r_precision", "dists@intra", "rho_spectrum@1", "c_recall@1"]


def clustered(seed=0, n_classes=6, per_class=10, dim=8):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    return (rng.normal(size=(n_classes, dim))[labels] + 0.3 * rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def test_the_torch_backend_runs_without_faiss_and_gives_the_numpy_input_s_values(monkeypatch):
    x, labels = clustered()
    from_numpy = metrics.compute_metrics(x, labels, NAMES, backend="torch", device="cpu")
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    with pytest.raises(ImportError):
        metrics.compute_metrics(x, labels, ["e_recall@1"])  # the faiss backend does need it
    from_tensor = metrics.compute_metrics(torch.from_numpy(x), labels, NAMES, backend="torch", device="cpu")
    assert from_tensor == pytest.approx(from_numpy, rel=1e-6)
    query = np.arange(len(x)) % 3 == 0  # a third of each class asks, the rest is the gallery
    gallery = metrics.compute_metrics(torch.from_numpy(x[query]), labels[query], ["e_recall@1", "mAP@R"],
                                      gallery=torch.from_numpy(x[~query]), gallery_labels=labels[~query], backend="torch")
    reference = metrics.compute_metrics(x[query], labels[query], ["e_recall@1", "mAP@R"], gallery=x[~query],
                                        gallery_labels=labels[~query], backend="torch")
    assert gallery == reference and gallery["e_recall@1"] > 0.5


def test_non_finite_tensors_are_refused_like_arrays():
    x, labels = clustered()
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="embeddings contain NaN or infinite values"):
        metrics.compute_metrics(torch.from_numpy(x), labels, ["e_recall@1"], backend="torch")
