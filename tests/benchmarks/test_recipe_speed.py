"""benchmarks/recipe_speed.py --tiny runs both columns on the CPU and prints every figure with its gain; the
synthetic tree it makes has CUB's layout. Speed figures come from the script on a GPU, never from a test."""
import json
import os
import subprocess
import sys

import pytest

from benchmarks import synthetic_cub

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_synthetic_tree_has_cub_s_layout_and_is_made_once(tmp_path):
    spec = synthetic_cub.TreeSpec(train_classes=3, test_classes=2, train_images=7, test_images=5, long_side=60,
                                  short_side=(40, 50))
    manifest = synthetic_cub.make_tree(str(tmp_path), spec, workers=2)
    folders = sorted(os.listdir(tmp_path / "cub200" / "images"))
    assert folders == [f"{c:03d}.Synthetic_{c:03d}" for c in range(1, 6)] and manifest["images"] == 12
    counts = [len(os.listdir(tmp_path / "cub200" / "images" / f)) for f in folders]
    assert counts == [3, 2, 2, 3, 2]  # 7 training images over 3 classes, 5 test images over 2
    path = tmp_path / "cub200" / "images" / folders[0] / "img_0000.jpg"
    stamp = os.stat(path).st_mtime_ns
    assert synthetic_cub.make_tree(str(tmp_path), spec) == manifest and os.stat(path).st_mtime_ns == stamp


@pytest.mark.slow
def test_tiny_run_prints_both_columns_and_their_gains(tmp_path):
    out = tmp_path / "figures.json"
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "recipe_speed.py"), "--tiny", "--epochs", "2",
               "--root", str(tmp_path), "--json", str(out)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("recipe: tiny"):].splitlines()
    assert "2 epochs per column" in table[0]
    assert table[1].split() == ["this", "branch", "items", "1-4", "off", "gain"]
    labels = [line[:34].strip() for line in table[2:]]
    assert labels == ["training img/s", "model-only fwd+bwd img/s", "ratio to model-only", "evaluation s/epoch",
                      "host s/epoch", "one-time s (before epoch 1)", "end of run s (pictures, t-SNE)",
                      "projected 150 epochs, min"]
    report = json.loads(out.read_text())
    for column in ("this_branch", "items_1_to_4_off"):
        figures = report[column]
        assert len(figures["epochs"]) == 2 and figures["train_img_s"] > 0 and figures["model_only_img_s"] > 0
        assert figures["ratio_to_model_only"] == pytest.approx(figures["train_img_s"] / figures["model_only_img_s"])
        per_epoch = figures["train_s_per_epoch"] + figures["eval_s"] + figures["host_s"]
        assert figures["projected_150_epochs_min"] * 60 > 149 * per_epoch
    assert "decoded (PIL)" in proc.stdout  # this branch's column ran the decoded-image store
