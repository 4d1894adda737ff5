"""Each sampler through main.main on a few glyph classes: the storage is filled once, updated at every step from
the step's own embeddings, refreshed each epoch with --data_idx_full_prec; a run stopped by SIGTERM (between
epochs or inside one) and resumed gives the uninterrupted run's results, storage included."""
import json
import os
import signal

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
    calls = {"fill": 0, "refresh": 0, "update": [], "sigterm_at_update": None}
    for method in ("fill", "refresh", "update"):
        original = getattr(EmbeddingStorage, method)

        def counted(self, *args, _original=original, _method=method):
            if _method == "update":
                calls["update"].append((torch.as_tensor(args[0]).clone(), args[1].clone()))
                if len(calls["update"]) == calls["sigterm_at_update"]:
                    os.kill(os.getpid(), signal.SIGTERM)  # main.py finishes the step, saves and exits 75
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
        assert calls["fill"] == calls["refresh"] == 0 and calls["update"] == [] and set(state["sampler"]) == {"rng"}


@pytest.mark.slow
@pytest.mark.parametrize("stopped_at_step", [STEPS_PER_EPOCH, STEPS_PER_EPOCH + 3], ids=["between-epochs", "mid-epoch"])
def test_a_resumed_storage_run_gives_the_uninterrupted_results(glyph_runs, tmp_path, stopped_at_step):
    run, calls = glyph_runs
    flags = ["--data_sampler", "greedy_coreset", "--data_idx_full_prec", "--data_mb_mom", "0.5", "--data_mb_lr", "0.5",
             "--n_epochs", "2"]
    whole = run(*flags, "--savename", "whole")
    assert calls["fill"] == 1 and calls["refresh"] == 1  # every epoch after the first starts with a refresh
    calls["sigterm_at_update"] = len(calls["update"]) + stopped_at_step
    with pytest.raises(SystemExit) as stopped:
        run(*flags, "--savename", "split")
    assert stopped.value.code == 75
    state = torch.load(os.path.join(tmp_path, "glyphs", "split", resume.LAST_CHECKPOINT), weights_only=True)
    assert (state["epoch"], (state["progress"] or {}).get("step")) == ((0, None) if stopped_at_step == STEPS_PER_EPOCH
                                                                      else (0, 3))
    resumed = main.main(["--checkpoint", os.path.join(tmp_path, "glyphs", "split")])
    # the resumed run took its storage from the checkpoint, and refreshed it only for an epoch it began itself
    assert calls["fill"] == 2 and calls["refresh"] == 2
    for key in ("test/e_recall@1", "test/nmi", "train/loss"):
        assert resumed["last"][key] == pytest.approx(whole["last"][key], abs=1e-6)
    ends = [torch.load(os.path.join(r["run_dir"], resume.LAST_CHECKPOINT), weights_only=True) for r in (whole, resumed)]
    storages = [e["sampler"]["storage"] for e in ends]
    torch.testing.assert_close(storages[1]["embeddings"], storages[0]["embeddings"])
    torch.testing.assert_close(storages[1]["velocity"], storages[0]["velocity"])
    with open(os.path.join(resumed["run_dir"], "summary.json")) as f:
        assert json.load(f)["epochs"] == 2
