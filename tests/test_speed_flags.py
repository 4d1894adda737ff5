"""The speed flags end to end on a miniature CUB200 tree: what runs how often, what checkpoints hold, and bad
values refused with one line."""
import csv
import os

import pytest
import torch

import main
from tests.conftest import write_cub_tree

TINY = ["--dataset", "cub200", "--arch", "slimresnet18_normalize", "--not_pretrained", "--embed_dim", "8",
        "--bs", "4", "--resolution", "24", "--loss", "multisimilarity", "--kernels", "0", "--tsne_points", "0",
        "--evaluation_metrics", "e_recall@1", "nmi"]


def logged_epochs(run_dir, name):
    with open(os.path.join(run_dir, "CSV_Logs", name), newline="") as f:
        return [row[0] for row in csv.reader(f)][1:]


@pytest.mark.slow
def test_train_evaluation_checkpoints_and_pictures_follow_their_cadence(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    source = write_cub_tree(str(tmp_path / "data"), n_classes=4, per_class=2)
    summary = main.main(TINY + ["--source_path", source, "--save_path", str(tmp_path / "runs"), "--n_epochs", "3",
                                "--train_eval_every", "2", "--checkpoint_every", "2", "--data_cache", "ram"])
    run_dir = summary["run_dir"]
    assert logged_epochs(run_dir, "Data_Test_discriminative_e_recall.csv") == ["0", "1", "2"]
    assert logged_epochs(run_dir, "Data_Train_discriminative_e_recall.csv") == ["1", "2"]
    last = torch.load(os.path.join(run_dir, "checkpoint_last.pth.tar"), weights_only=True)
    assert last["epoch"] == 2 and last["scaler"] is None  # after epoch 2 (1-based) and after the last
    best = torch.load(os.path.join(run_dir, "checkpoint_Test_discriminative_e_recall@1.pth.tar"), weights_only=True)
    assert set(best) == {"model", "epoch", "opt", "metric", "value"}  # the model only
    assert os.listdir(os.path.join(run_dir, "Retrieval_Grids")) == ["Test_epoch_002.png"]  # pictures at the end
    assert len(os.listdir(os.path.join(run_dir, "Progression_Plots"))) >= 3


def test_a_dry_run_decodes_nothing_and_bad_values_get_one_line(tmp_path, capsys):
    source = write_cub_tree(str(tmp_path / "data"), n_classes=4, per_class=2)
    args = TINY + ["--source_path", source, "--save_path", str(tmp_path / "runs"), "--data_cache", "ram"]
    assert main.main(args + ["--dry_run"])["dry_run"] is True
    assert not os.path.exists(tmp_path / "runs")  # no run folder, no decoded images
    for flag, value, message in [("--train_eval_every", "0", "--train_eval_every: 0 is out of range: must be an integer >= 1"),
                                 ("--checkpoint_every", "-1", "--checkpoint_every: -1 is out of range: must be an integer >= 1"),
                                 ("--resolution", "0", "--resolution: 0 is out of range: must be an integer >= 1"),
                                 ("--data_cache_gb", "0", "--data_cache_gb: 0 is out of range: must be a number > 0"),
                                 ("--data_cache", "device", "--data_cache device needs a CUDA device")]:
        with pytest.raises(SystemExit) as exit_info:
            main.main(args[:-2] + [flag, value, "--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and message in err[0], err
