"""Each sampler through main.main on a few glyph classes: the storage is filled once, updated at every step from
the step's own embeddings, refreshed each epoch with --data_idx_full_prec; a resumed run gives the
uninterrupted run's results, storage included."""
import json
import os

import numpy as np
import pytest
import torch

import datasets
import main
from datasets.embedding_storage import EmbeddingStorage
from tests.conftest import glyph_subset
from utilities import resume

FLAGS = ["--dataset", "glyphs", "--arch", "slimresnet18_normalize", "--not_pretrained", "--embed_dim", "16",
         "--bs", "8", "--samples_per_class", "2", "--kernels", "0", "--loss", "margin", "--device", "cpu",
         "--lr", "1e-3", "--plot_every", "0", "--tsne_points", "0", "--retrieval_queries", "0", "--no_train_metrics",
         "--evaluation_metrics", "e_recall@1", "nmi", "--storage_metrics", "e_recall@1", "--data_batchmatch_bigbs", "16",
         "--seed", "2"]
STEPS_PER_EPOCH = 48 // 8


def few_glyphs(name, opt, source_path):
    train, test = list(range(8)), list(range(100, 106))
    return {"training": glyph_subset(train, 6, train=True), "evaluation": glyph_subset(train, 6),
            "testing": glyph_subset(test, 4)}


@pytest.fixture
def glyph_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(datasets, "select", few_glyphs)
    calls = {"fill": 0, "refresh": 0, "update": []}
    for method in ("fill", "refresh", "update"):
        original = getattr(EmbeddingStorage, method)

        def counted(self, *args, _original=original, _method=method):
            if _method == "update":
                calls["update"].append((torch.as_tensor(args[0]).clone(), args[1].clone()))
            else:
                calls[_method] += 1
            return _original(self, *args)

        monkeypatch.setattr(EmbeddingStorage, method, counted)
    return lambda *flags: main.main(FLAGS + ["--save_path", str(tmp_path)] + list(flags)), calls


@pytest.mark.parametrize("sampler", list(datasets.SAMPLERS))
def test_a_short_glyphs_run_with_each_sampler(glyph_runs, sampler):
    run, calls = glyph_runs
    summary = run("--data_sampler", sampler, "--n_epochs", "1")
    assert 0.0 <= summary["last"]["test/e_recall@1"] <= 1.0 and np.isfinite(summary["last"]["train/loss"])
    state = torch.load(os.path.join(summary["run_dir"], resume.LAST_CHECKPOINT), weights_only=True)
    if issubclass(datasets.SAMPLERS[sampler], datasets.samplers.StorageSampler):
        assert calls["fill"] == 1 and calls["refresh"] == 0 and len(calls["update"]) == STEPS_PER_EPOCH
        for indices, embeddings in calls["update"]:
            assert indices.shape == (8,) and embeddings.shape == (8, 16) and not embeddings.requires_grad
        indices, embeddings = calls["update"][-1]
        last = [i for i in range(len(indices)) if indices[i] not in indices[i + 1:]]  # a repeated index keeps its last
        stored = state["sampler"]["storage"]["embeddings"]
        torch.testing.assert_close(stored[indices[last]], embeddings[last])  # the last step's own embeddings
    else:
        assert calls == {"fill": 0, "refresh": 0, "update": []} and set(state["sampler"]) == {"rng"}


@pytest.mark.slow
def test_a_resumed_storage_run_gives_the_uninterrupted_results(glyph_runs, tmp_path):
    run, calls = glyph_runs
    flags = ["--data_sampler", "greedy_coreset", "--data_idx_full_prec", "--data_mb_mom", "0.5", "--data_mb_lr", "0.5"]
    whole = run(*flags, "--n_epochs", "2", "--savename", "whole")
    assert calls["fill"] == 1 and calls["refresh"] == 1  # every epoch after the first starts with a refresh
    first = run(*flags, "--n_epochs", "1", "--savename", "split")
    resumed = main.main(["--checkpoint", first["run_dir"], "--n_epochs", "2"])
    assert calls["fill"] == 2  # the resumed run took its storage from the checkpoint
    for key in ("test/e_recall@1", "test/nmi", "train/loss"):
        assert resumed["last"][key] == pytest.approx(whole["last"][key], abs=1e-6)
    ends = [torch.load(os.path.join(r["run_dir"], resume.LAST_CHECKPOINT), weights_only=True) for r in (whole, resumed)]
    storages = [e["sampler"]["storage"] for e in ends]
    torch.testing.assert_close(storages[1]["embeddings"], storages[0]["embeddings"])
    torch.testing.assert_close(storages[1]["velocity"], storages[0]["velocity"])
    with open(os.path.join(resumed["run_dir"], "summary.json")) as f:
        assert json.load(f)["epochs"] == 2
