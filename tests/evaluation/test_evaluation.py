"""Evaluation: evaltypes and their weighted combinations, query/gallery splits, backend choice, and the
query/gallery protocol through main.py on small hand-made In-Shop-style splits."""
import json
import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import datasets
import evaluation
import main
import metrics
from datasets.base import ArrayDataset
from evaluation import evaltypes
from tests.conftest import glyph_subset, make_opt
from tests.metrics import oracle
from utilities.errors import UsageError


def test_plain_and_combined_evaltypes_parse():
    assert evaltypes.parse("discriminative").output_keys == ("embeds",)
    combined = evaltypes.parse("Combined_discriminative_avg_features-1-0.5")
    assert combined.parts == ("discriminative", "avg_features") and combined.weights == (1.0, 0.5)
    assert evaltypes.parse("Combined_avg_features_discriminative-2-1").output_keys == ("avg_features", "embeds")
    assert evaltypes.output_keys(["discriminative", "Combined_discriminative_avg_features-1-1"]) == ["embeds", "avg_features"]


@pytest.mark.parametrize("bad", ["Combined_discriminative_avg_features-1", "Combined_discriminative_foo-1-1",
                                 "Combined_discriminative_avg_features-1-x", "Combined_discriminative_avg_features-0-0",
                                 "Combined_discriminative_avg_features--1-1"])
def test_bad_combinations_show_the_syntax(bad):
    with pytest.raises(UsageError, match=r"--evaltypes: cannot read .*write Combined_<a>_<b>-<wa>-<wb> with a, b "
                                         r"from avg_features, discriminative"):
        evaltypes.parse(bad)


def test_unknown_evaltype_stops_at_parse_time(capsys):
    with pytest.raises(SystemExit):
        make_opt("--evaltypes", "target_2048")
    assert "--evaltypes: unknown evaltype 'target_2048'; choose one of: avg_features, discriminative" in capsys.readouterr().err


def test_combined_cosine_is_the_weighted_mean_of_the_parts_cosines():
    rng = np.random.default_rng(0)
    outputs = {"embeds": rng.normal(size=(5, 4)), "avg_features": 100 * rng.normal(size=(5, 9))}
    z = evaltypes.features(["Combined_discriminative_avg_features-1-0.5"], outputs)[
        "Combined_discriminative_avg_features-1-0.5"]

    def cos(m):
        m = m / np.linalg.norm(m, axis=1, keepdims=True)
        return m @ m.T

    expected = (1.0 * cos(outputs["embeds"]) + 0.25 * cos(outputs["avg_features"])) / 1.25
    np.testing.assert_allclose(z @ z.T, expected, atol=1e-6)
    assert z.dtype == np.float32 and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-6)


def test_evaluated_sets_use_query_and_gallery_when_present():
    a, b, c = object(), object(), object()
    assert evaluation.evaluated_sets({"testing_query": a, "testing_gallery": b, "evaluation": c}) == {
        "testing": {"query": a, "gallery": b}, "evaluation": {"query": c}}
    assert evaluation.evaluated_sets({"testing": a, "validation_query": b, "validation_gallery": c,
                                      "evaluation": a}, include_train=False) == {
        "testing": {"query": a}, "validation": {"query": b, "gallery": c}}
    with pytest.raises(ValueError, match="only one of testing_query and testing_gallery"):
        evaluation.evaluated_sets({"testing_query": a})


def test_metrics_run_on_the_gpu_of_a_cuda_run_and_with_faiss_on_the_cpu(monkeypatch):
    import sys
    import types

    cuda = torch.device("cuda", 0)
    for opt in (make_opt(), make_opt("--evaluate_on_gpu")):  # on CUDA the flag is the default
        assert evaluation.metric_backend(opt, cuda) == ("torch", cuda)
    with pytest.warns(UserWarning, match="--evaluate_on_gpu: the run is on the CPU"):
        assert evaluation.metric_backend(make_opt("--evaluate_on_gpu"), torch.device("cpu")) == ("faiss", None)
    assert evaluation.metric_backend(make_opt(), torch.device("cpu")) == ("faiss", None)
    monkeypatch.setitem(sys.modules, "faiss", types.SimpleNamespace(get_num_gpus=lambda: 1))  # a faiss-gpu build
    assert evaluation.metric_backend(make_opt(), cuda) == ("faiss_gpu", cuda)
    monkeypatch.setitem(sys.modules, "faiss", None)  # no faiss at all
    assert evaluation.metric_backend(make_opt(), cuda) == ("torch", cuda)


class PixelModel(nn.Module):
    """embeds = a fixed projection of the pixels; avg_features = the pixels."""

    def __init__(self, pixels: int, dim: int = 6):
        super().__init__()
        self.proj = nn.Linear(pixels, dim, bias=False)
        nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, images):
        flat = images.flatten(1)
        return {"embeds": self.proj(flat), "avg_features": flat, "features": images}


def image_dataset(images, labels):
    return ArrayDataset(images, labels, [f"c{i}" for i in range(labels.max() + 1)],
                        lambda t: t.float() / 255.0)


def test_query_gallery_split_is_evaluated_queries_against_the_gallery_only():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 3, 3), dtype=np.uint8)
    labels = rng.integers(0, 8, 40)
    query, gallery = image_dataset(images[:15], labels[:15]), image_dataset(images[15:], labels[15:])
    model = PixelModel(9)
    names = ["e_recall@1", "e_recall@4", "mAP@R", "r_precision", "nmi"]
    opt = make_opt("--evaluation_metrics", *names, "--evaltypes", "discriminative",
                   "Combined_discriminative_avg_features-1-2", "--kernels", "1")
    loaders = {"query": DataLoader(query, batch_size=4), "gallery": DataLoader(gallery, batch_size=7)}
    got = evaluation.evaluate_split(model, loaders, torch.device("cpu"), opt, desc="Embedding Test Data")

    with torch.no_grad():
        q = model(torch.from_numpy(images[:15]).float() / 255.0)
        g = model(torch.from_numpy(images[15:]).float() / 255.0)
    ranks = oracle.rankings(q["embeds"].numpy(), labels[:15], g["embeds"].numpy(), labels[15:])
    assert got["discriminative"]["e_recall@4"] == pytest.approx(oracle.recall(ranks, labels[:15], 4))
    assert got["discriminative"]["mAP@R"] == pytest.approx(oracle.map_at_r(ranks, labels[:15]))
    combined = {n: evaltypes.features([n], {"embeds": q["embeds"].numpy(), "avg_features": q["avg_features"].numpy()})[n]
                for n in ["Combined_discriminative_avg_features-1-2"]}
    combined_gallery = evaltypes.features(["Combined_discriminative_avg_features-1-2"],
                                          {"embeds": g["embeds"].numpy(), "avg_features": g["avg_features"].numpy()})
    expected = metrics.compute_metrics(combined["Combined_discriminative_avg_features-1-2"], labels[:15], names,
                                       gallery=combined_gallery["Combined_discriminative_avg_features-1-2"],
                                       gallery_labels=labels[15:], seed=opt.seed)
    assert got["Combined_discriminative_avg_features-1-2"] == expected
    leave_one_out = evaluation.evaluate_split(model, DataLoader(query, batch_size=4), torch.device("cpu"), opt, "x")
    loo_ranks = oracle.rankings(q["embeds"].numpy(), labels[:15])
    assert leave_one_out["discriminative"]["mAP@R"] == pytest.approx(oracle.map_at_r(loo_ranks, labels[:15]))


def test_kmeans_train_classes_and_reference_parity_restore_the_reference_cluster_count():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (30, 3, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(5), 6)
    loader = DataLoader(image_dataset(images, labels), batch_size=8)
    model = PixelModel(9)
    with torch.no_grad():
        x = model(torch.from_numpy(images).float() / 255.0)["embeds"].numpy()
    for flag, k in (([], 5), (["--kmeans_train_classes"], 11), (["--reference_parity"], 11)):
        opt = make_opt("--evaluation_metrics", "nmi", "f1", "--storage_metrics", "nmi", *flag)
        got = evaluation.evaluate_split(model, loader, torch.device("cpu"), opt, "x", n_train_classes=11)["discriminative"]
        assert got == metrics.compute_metrics(x, labels, ["nmi", "f1"], n_clusters=k, seed=opt.seed)
    assert got != metrics.compute_metrics(x, labels, ["nmi", "f1"], seed=opt.seed)


def glyph_splits_with_query_gallery(name, opt, source_path):
    """An In-Shop-style `datasets.select` result built from a few glyph classes (what issue 5's datasets return)."""
    train_classes, test_classes = list(range(8)), list(range(100, 106))
    return {"training": glyph_subset(train_classes, 4, 0, True), "evaluation": glyph_subset(train_classes, 4),
            "testing_query": glyph_subset(test_classes, 2), "testing_gallery": glyph_subset(test_classes, 3, 2)}


def test_main_reports_query_gallery_test_metrics_and_both_protocols(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(datasets, "select", glyph_splits_with_query_gallery)
    summary = main.main(["--dataset", "glyphs", "--arch", "slimresnet18_normalize", "--not_pretrained", "--bs", "8",
                         "--samples_per_class", "2", "--n_epochs", "2", "--kernels", "1", "--loss", "margin",
                         "--save_path", str(tmp_path), "--evaltypes", "discriminative",
                         "Combined_discriminative_avg_features-1-1", "--storage_metrics", "mAP@R"])
    assert summary["protocols"].keys() == {"best", "last"} and "each value taken separately" in summary["protocols"]["best"]
    for key in ("test/e_recall@1", "test/e_recall@1000", "test/mAP@R", "test/r_precision", "test/nmi",
                "test/Combined_discriminative_avg_features-1-1/mAP@R", "train/mAP@R"):
        assert 0.0 <= summary["last"][key] <= 1.0 and summary["best"][key] >= summary["last"][key], key
    # Six test items, each with 2 queries and 3 gallery images: every query has R = 3 relevant items, so
    # Recall@1 is a share of the 12 queries and R-Precision a share of their 36 relevant items.
    assert summary["last"]["test/e_recall@1000"] == 1.0
    assert round(summary["last"]["test/e_recall@1"] * 12, 6).is_integer()
    assert round(summary["last"]["test/r_precision"] * 36, 6).is_integer()
    with open(os.path.join(summary["run_dir"], "summary.json")) as f:
        assert json.load(f) == summary
    assert os.path.isfile(os.path.join(summary["run_dir"], "checkpoint_Test_discriminative_mAP@R.pth.tar"))


def test_defaults_are_the_full_evaluation_set_with_split_class_k_means():
    opt = make_opt()
    assert opt.evaluation_metrics == ["e_recall@1", "e_recall@2", "e_recall@4", "e_recall@8", "e_recall@10",
                                      "e_recall@100", "e_recall@1000", "nmi", "mAP@R", "r_precision"]
    assert opt.kmeans_train_classes is False and opt.evaluate_on_gpu is False
