"""--log_online with WANDB_MODE=offline (no network, no key): the reference's key names and values, the config,
read back from the offline run folder; and the pictures a run draws, end to end."""
import csv
import os

import numpy as np
import pytest
from PIL import Image

import main
from tests.conftest import write_cub_tree
from tests.test_resume import TINY
from tests.wandb_offline import read_offline_run
from utilities.retrieval_grid import QUERY, RIGHT, WRONG, Layout


def csv_values(run_dir, name):
    with open(os.path.join(run_dir, "CSV_Logs", name), newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_offline_wandb_run_holds_the_reference_keys_values_and_config(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    source = write_cub_tree(str(tmp_path / "data"), n_classes=6, per_class=2)  # train 6 images: 1 step; test 6
    summary = main.main(TINY + ["--source_path", source, "--save_path", str(tmp_path / "runs"), "--n_epochs", "2",
                                "--kernels", "0", "--log_online", "--project", "P", "--group", "G",
                                "--plot_every", "1", "--retrieval_queries", "3", "--retrieval_k", "4",
                                "--tsne_points", "5"])
    run_dir = summary["run_dir"]
    assert run_dir == str(tmp_path / "runs" / "cub200" / "G_s3")  # savename <group>_s<seed>, as the reference

    info, config, history = read_offline_run(run_dir)
    assert (info["project"], info["group"], info["name"]) == ("P", "G", "G_s3")
    assert config["lr"] == 0.001 and config["loss"] == "s2sd" and config["loss_s2sd_target_dims"] == [24, 32]
    assert config["wandb_key"] is None and "WANDB_API_KEY" not in str(config)
    assert [row["_step"] for row in history] == [0, 1]
    expected_keys = {"Train: epochs", "Train: loss", "Train: loss: source", "Train: loss: target", "Train: loss: kl",
                     "Train: loss: feat_kl", "Train: time", "Train: degenerate_steps",
                     "Test: discriminative_e_recall: e_recall@1", "Test: discriminative_e_recall: e_recall@2",
                     "Test: discriminative_nmi: nmi"}
    for epoch, row in enumerate(history):
        assert expected_keys <= set(row), expected_keys - set(row)
        assert row["Train: epochs"] == epoch
        recall = csv_values(run_dir, "Data_Test_discriminative_e_recall.csv")[epoch]
        assert row["Test: discriminative_e_recall: e_recall@1"] == pytest.approx(float(recall["e_recall@1"]), abs=1e-12)
        loss = csv_values(run_dir, "Data_Train_loss.csv")[epoch]
        assert row["Train: loss"] == pytest.approx(float(loss["loss"]), abs=1e-12)
        assert row["Train: loss: kl"] == pytest.approx(float(loss["kl"]), abs=1e-12)
    assert history[-1]["Test: discriminative_nmi: nmi"] == pytest.approx(summary["last"]["test/nmi"], abs=1e-12)

    # pictures: one plot per CSV log, a retrieval grid per epoch with 3 x (1 + 4) panels, a t-SNE map of 5 points
    plots = sorted(os.listdir(os.path.join(run_dir, "Progression_Plots")))
    logs = sorted(os.listdir(os.path.join(run_dir, "CSV_Logs")))
    assert plots == [name.replace("Data_", "Graph_").replace(".csv", ".png") for name in logs]
    assert sorted(os.listdir(os.path.join(run_dir, "Retrieval_Grids"))) == ["Test_epoch_000.png", "Test_epoch_001.png"]
    layout = Layout()
    with Image.open(os.path.join(run_dir, "Retrieval_Grids", "Test_epoch_001.png")) as image:
        assert image.format == "PNG" and image.size == layout.size(3, 5)
        pixels = np.asarray(image.convert("RGB"))
    frames = [[tuple(pixels[layout.top(r) + 1, layout.left(c) + 1]) for c in range(5)] for r in range(3)]
    assert all(row[0] == QUERY and set(row[1:]) <= {RIGHT, WRONG} for row in frames)
    assert all(row[1:].count(RIGHT) <= 1 for row in frames)  # each test class has 2 images: 1 right neighbour at most
    with Image.open(os.path.join(run_dir, "tsne_Test.png")) as image:
        assert image.format == "PNG"
    with open(os.path.join(run_dir, "tsne_Test.csv")) as f:
        assert len(f.read().splitlines()) == 1 + 5
