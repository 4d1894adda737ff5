"""main.py end to end: the seed README command on a CUB200-layout folder, and one-line errors at run time."""
import csv
import json
import os
import shlex

import pytest
import torch

import main
from tests.conftest import write_cub_tree
from tests.test_parameters import SEED_README


def run_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def no_cached_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.mark.slow
def test_seed_readme_command_runs_on_cpu_with_a_gpu_flag(tmp_path, no_cached_weights, capsys):
    source = write_cub_tree(str(tmp_path / "data"), n_classes=112, per_class=2)
    argv = shlex.split(SEED_README.replace("/data", source)) + [
        "--not_pretrained", "--n_epochs", "1", "--save_path", str(tmp_path / "runs"), "--kernels", "2",
        "--resolution", "64"]  # the seed's flags as they are; 64 px crops keep ResNet-50 on a CPU to seconds
    with pytest.warns(UserWarning, match="--gpu 0: no CUDA device is available; running on the CPU"):
        summary = main.main(argv)
    run_dir = summary["run_dir"]
    assert run_dir == str(tmp_path / "runs" / "cub200" / "G_s0")
    assert summary["epochs"] == 1 and summary["train_seconds"] > 0
    assert set(summary["last"]) >= {"test/e_recall@1", "test/nmi", "train/e_recall@1", "train/loss"}
    recalls = [summary["last"][f"test/e_recall@{k}"] for k in (1, 2, 4, 8, 10, 100, 1000)]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0  # 112 test images: k = 1000 reaches every one
    assert all(abs(r * 112 - round(r * 112)) < 1e-6 for r in recalls)  # a share of the 112 queries
    with open(os.path.join(run_dir, "summary.json")) as f:
        assert json.load(f) == summary
    best = torch.load(os.path.join(run_dir, "checkpoint_Test_discriminative_e_recall@1.pth.tar"), weights_only=True)
    assert best["value"] == summary["best"]["test/e_recall@1"] and best["epoch"] == 0
    with open(os.path.join(run_dir, "CSV_Logs", "Data_Test_discriminative_e_recall.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [float(rows[-1][f"e_recall@{k}"]) for k in (1, 2, 4, 8, 10, 100, 1000)] == recalls
    params = open(os.path.join(run_dir, "Parameter_Info.txt")).read()
    assert "loss_s2sd_feat_distill\n\tTrue" in params
    assert "Epoch 1/1 | loss" in capsys.readouterr().out


def test_without_weights_the_run_stops_with_the_where_to_put_them_line(tmp_path, no_cached_weights, capsys):
    source = write_cub_tree(str(tmp_path / "data"), n_classes=4, per_class=2)
    line = run_error(capsys, ["--source", source, "--bs", "4", "--save_path", str(tmp_path / "runs")])
    assert line.startswith("main.py: error: --arch resnet50: ImageNet weights not found; put resnet50-0676ba61.pth in ")
    assert line.endswith("or pass --pretrained_path FILE, or pass --not_pretrained to train from scratch")
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("layout", ["missing", "empty"])
def test_missing_or_empty_dataset_folder(tmp_path, capsys, layout):
    if layout == "empty":
        (tmp_path / "data" / "cub200" / "images").mkdir(parents=True)
    line = run_error(capsys, ["--source", str(tmp_path / "data"), "--not_pretrained"])
    expected = "dataset folder not found" if layout == "missing" else "no class folders named NNN.Class_Name"
    assert line.startswith("main.py: error: --source_path: ") and expected in line


def test_device_cuda_without_cuda_is_an_error(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert "--device cuda: no CUDA device is available" in run_error(capsys, ["--device", "cuda"])


def test_inshop_runs_end_to_end_with_queries_against_the_gallery(tmp_path, monkeypatch, capsys):
    from tests.datasets.trees import inshop_rows, write_inshop_tree

    monkeypatch.setenv("WANDB_MODE", "disabled")
    write_inshop_tree(str(tmp_path / "data"), inshop_rows(n_train_items=4, n_test_items=3))
    summary = main.main(["--dataset", "inshop", "--source_path", str(tmp_path / "data"), "--arch", "slimresnet18_normalize",
                         "--not_pretrained", "--loss", "multisimilarity", "--bs", "4", "--n_epochs", "1", "--kernels", "0",
                         "--evaluation_metrics", "e_recall@1", "e_recall@10", "nmi", "--tsne_points", "0",
                         "--save_path", str(tmp_path / "runs")])
    # 3 queries, each with 2 gallery images of its item among 6: Recall@10 covers the whole gallery.
    assert summary["last"]["test/e_recall@10"] == 1.0
    assert summary["last"]["test/e_recall@1"] in (0.0, 1 / 3, 2 / 3, 1.0) and "train/e_recall@1" in summary["last"]
    assert os.path.isfile(os.path.join(summary["run_dir"], "checkpoint_Test_discriminative_e_recall@1.pth.tar"))
    out, err = capsys.readouterr()
    # Output that is not a terminal gets no progress bars: the epoch's one line, nothing redrawn.
    assert "\r" not in err and "it/s" not in err and "Epoch 1 Training" not in err
    assert "Epoch 1/1 | loss " in out
