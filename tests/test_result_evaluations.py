"""Result_Evaluations.py: mean +- std over seeds per --group, last epoch and maximum over epochs, from run folders."""
import csv
import json
import os

import numpy as np
import pytest

import main
import Result_Evaluations
from tests.conftest import write_cub_tree
from tests.test_resume import TINY
from evaluation.logger import RunLogger
from utilities.run_folder import write_parameters


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_three_seeds_of_a_tiny_run_give_the_mean_and_std_of_their_summaries(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    source = write_cub_tree(str(tmp_path / "data"), n_classes=4, per_class=2)
    runs = str(tmp_path / "runs")
    summaries = []
    for seed in (0, 1, 2):
        summaries.append(main.main(TINY + ["--source_path", source, "--save_path", runs, "--n_epochs", "2",
                                           "--seed", str(seed), "--group", "tiny", "--savename", f"tiny_s{seed}",
                                           "--kernels", "0"]))
    names = ["test/e_recall@1", "test/nmi", "train/loss"]
    text = Result_Evaluations.main(["--runs", runs, "--metrics", *names, "--scale", "1", "--digits", "6"])

    rows = read_csv(os.path.join(runs, "results.csv"))
    assert [(r["protocol"], r["dataset"], r["group"], r["runs"], r["seeds"]) for r in rows] == [
        ("last", "cub200", "tiny", "3", "0 1 2"), ("max", "cub200", "tiny", "3", "0 1 2")]
    for row, kind in zip(rows, ("last", "best")):  # summary.json's "best" is the max protocol (min for the loss)
        for name in names:
            values = np.array([s[kind][name] for s in summaries])
            assert float(row[f"{name} mean"]) == pytest.approx(values.mean(), abs=1e-12)
            assert float(row[f"{name} std"]) == pytest.approx(values.std(), abs=1e-12)
    losses = np.array([s["best"]["train/loss"] for s in summaries])
    assert f"{losses.mean():.6f} ± {losses.std():.6f}" in text.split("## Maximum over epochs")[1]
    with open(os.path.join(runs, "results.md")) as f:
        assert f.read() == text
    assert "Wrote " + os.path.join(runs, "results") + ".md" in capsys.readouterr().out


def fake_run(root, name, dataset, group, seed, recall_by_epoch, evaltype="discriminative"):
    """A run folder written by the real logger, with chosen values."""
    import parameters

    opt = parameters.build_parser().parse_args(["--dataset", dataset, "--group", group, "--seed", str(seed)])
    run_dir = os.path.join(root, dataset, name)
    os.makedirs(run_dir)
    write_parameters(run_dir, opt)
    logger = RunLogger(run_dir)
    for epoch, recall in enumerate(recall_by_epoch):
        logger.log_group("training", "loss", {"loss": 1.0 / (epoch + 1) + seed}, epoch)
        logger.log_metrics("testing", {evaltype: {"e_recall@1": recall, "e_recall@2": min(1.0, recall + 0.1)}}, epoch)
    return run_dir


def test_groups_protocols_and_skipped_runs(tmp_path, capsys):
    root = str(tmp_path)
    fake_run(root, "A_s0", "cub200", "A", 0, [0.2, 0.6, 0.5])
    fake_run(root, "A_s1", "cub200", "A", 1, [0.3, 0.4, 0.45])
    fake_run(root, "A_s2_short", "cub200", "A", 2, [0.9])
    fake_run(root, "B_s0", "cars196", "B", 0, [0.1, 0.2, 0.3])
    fake_run(root, "B_s0_1", "cars196", "B", 0, [0.3, 0.2, 0.1])
    out = str(tmp_path / "table")
    text = Result_Evaluations.main(["--runs", root, "--out", out, "--min_epochs", "2"])
    err = capsys.readouterr().err
    assert "skipped " + os.path.join(root, "cub200", "A_s2_short") + ": 1 epochs logged, --min_epochs 2" in err
    assert "cars196 / B: seed(s) 0 appear in several runs" in err

    last, best = text.split("## Maximum over epochs (each value separately)")
    assert "| dataset | group | runs | seeds | epochs | test/e_recall@1 | test/e_recall@2 |" in last
    assert "| cars196 | B | 2 | 0 0 | 3 | 20.00 ± 10.00 | 30.00 ± 10.00 |" in last
    assert "| cub200 | A | 2 | 0 1 | 3 | 47.50 ± 2.50 | 57.50 ± 2.50 |" in last
    assert "| cars196 | B | 2 | 0 0 | 3 | 30.00 ± 0.00 | 40.00 ± 0.00 |" in best
    assert "| cub200 | A | 2 | 0 1 | 3 | 52.50 ± 7.50 | 62.50 ± 7.50 |" in best
    assert text.index("cars196") < text.index("cub200")
    rows = read_csv(out + ".csv")
    assert len(rows) == 4 and float(rows[3]["test/e_recall@1 mean"]) == pytest.approx(52.5)


def test_other_evaltypes_lower_is_better_values_and_errors(tmp_path, capsys):
    root = str(tmp_path)
    fake_run(root, "C_s0", "cub200", "C", 0, [0.2, 0.4], evaltype="multi")
    fake_run(root, "C_s1", "cub200", "C", 1, [0.4, 0.1], evaltype="multi")
    text = Result_Evaluations.main(["--runs", root, "--metrics", "test/multi/e_recall@1", "train/loss",
                                    "--scale", "1", "--digits", "3"])
    last, best = text.split("## Maximum")
    assert "| 0.250 ± 0.150 | 1.000 ± 0.500 |" in last  # losses 0.5 and 1.5 at the last epoch
    assert "| 0.400 ± 0.000 | 1.000 ± 0.500 |" in best  # the loss's best is its minimum
    with pytest.raises(SystemExit) as exit_info:
        Result_Evaluations.main(["--runs", root, "--metrics", "test/e_recall@4"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(
        "Result_Evaluations.py: error: --metrics: test/e_recall@4 not logged by any run; logged: ")
    with pytest.raises(SystemExit):
        Result_Evaluations.main(["--runs", str(tmp_path / "nothing")])
    assert "--runs: no such folder" in capsys.readouterr().err
    with open(os.path.join(root, "cub200", "C_s0", "parameters.json")) as f:
        assert json.load(f)["group"] == "C"


def test_at_epoch_reads_each_run_as_it_stood_after_that_many_epochs(tmp_path, capsys):
    root = str(tmp_path)
    fake_run(root, "A_s0", "cub200", "A", 0, [0.2, 0.6, 0.5])
    fake_run(root, "A_s1", "cub200", "A", 1, [0.3, 0.4, 0.45])
    fake_run(root, "A_s2_short", "cub200", "A", 2, [0.9])
    text = Result_Evaluations.main(["--runs", root, "--metrics", "test/e_recall@1", "--at_epoch", "2"])
    last, best = text.split("## Maximum")
    assert "| cub200 | A | 3 | 0 1 2 | 1-2 | 63.33 ± 20.55 |" in last  # 0.6, 0.4 at epoch 2; 0.9 had 1 epoch
    assert "| cub200 | A | 3 | 0 1 2 | 1-2 | 63.33 ± 20.55 |" in best  # epoch 3's 0.5 and 0.45 are not seen
    with pytest.raises(SystemExit) as exit_info:
        Result_Evaluations.main(["--runs", root, "--at_epoch", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.endswith("Result_Evaluations.py: error: --at_epoch must be at least 1, got 0\n")
