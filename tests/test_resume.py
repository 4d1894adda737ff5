"""--checkpoint: exact resumption after SIGKILL mid-epoch, a kill during a checkpoint write, refusals, NaN stops;
and preemption: SIGTERM mid-epoch saves the position inside the epoch, and the resumed run ends with the
results of an uninterrupted one.

The runs are tiny (a miniature CUB200 tree, slimresnet18, 2 steps per epoch) but exercise everything a resume
must restore: S2SD with margin source and target criteria (learnable betas in their own optimizer groups),
the distance miner (torch random numbers), feature distillation switched on by S2SD's iteration counter in
the middle of the interrupted epoch, a MultiStepLR milestone, Adam moments, the class_random sampler, and
random crops drawn by DataLoader workers or, with the decoded-image store (--data_cache ram), batch-wise.
"""
import csv
import json
import os
import signal
import sys

import numpy as np
import pytest
import torch

import main
from tests import processes
from tests.conftest import write_cub_tree
from utilities import resume
from utilities.errors import EXIT_DIVERGED, EXIT_INTERRUPTED, UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset", "cub200", "--arch", "slimresnet18_normalize", "--not_pretrained", "--embed_dim", "16",
        "--bs", "4", "--samples_per_class", "2", "--no_train_metrics", "--kernels", "1", "--device", "cpu",
        "--loss", "s2sd", "--loss_s2sd_source", "margin", "--loss_s2sd_target", "margin", "--batch_mining", "distance",
        "--loss_s2sd_target_dims", "24", "32", "--loss_s2sd_feat_distill", "--loss_s2sd_feat_distill_delay", "3",
        "--lr", "1e-3", "--tau", "1", "--gamma", "0.5", "--seed", "3", "--plot_every", "0", "--tsne_points", "0",
        "--evaluation_metrics", "e_recall@1", "e_recall@2", "nmi"]


def run_interrupted(args, *flags, status=-signal.SIGKILL):
    """Run main.py through tests/interrupt_run.py in its own process group (tests/processes.py); returns its
    stderr lines that are not warnings."""
    proc = processes.run([sys.executable, os.path.join(ROOT, "tests", "interrupt_run.py"), *flags, "--", *args],
                         timeout=300, cwd=ROOT)
    assert proc.returncode == status, proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if line.startswith("main.py")]


def run_killed(args, *flags):
    run_interrupted(args, *flags)


def csv_rows(run_dir, name):
    with open(os.path.join(run_dir, "CSV_Logs", name), newline="") as f:
        return list(csv.reader(f))


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module", params=[[], ["--data_cache", "ram", "--deterministic"]], ids=["workers", "store"])
def uninterrupted(tmp_path_factory, request):
    """The tiny run without interruption: 2 epochs of 2 steps, its crops drawn by DataLoader workers, or batch-wise
    from the decoded-image store (whose disk cache the killed run then reads). Returns (flags for the same run,
    its summary)."""
    root = tmp_path_factory.mktemp("resume")
    source = write_cub_tree(str(root / "data"), n_classes=8, per_class=2)  # train: 8 images = 2 steps of 4
    args = TINY + request.param + ["--source_path", source, "--save_path", str(root / "runs"), "--n_epochs", "2"]
    return args, main.main(args + ["--savename", "uninterrupted"])


def assert_same_results(run_dir, reference):
    """Same metrics and losses (to 1e-6), same final weights, criterion state and CSV rows as `reference`."""
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    assert set(summary["last"]) == set(reference["last"])
    compared = [key for key in reference["last"] if key != "train/time"]
    assert {"test/e_recall@1", "test/nmi", "train/loss", "train/feat_kl"} <= set(compared)
    for key in compared:
        assert summary["last"][key] == pytest.approx(reference["last"][key], abs=1e-6), key
        assert summary["best"][key] == pytest.approx(reference["best"][key], abs=1e-6), key
    final_ref = weights(os.path.join(reference["run_dir"], resume.LAST_CHECKPOINT))
    final = weights(os.path.join(run_dir, resume.LAST_CHECKPOINT))
    for part in ("model", "criterion"):
        for name, tensor in final_ref[part].items():
            assert torch.allclose(final[part][name].double(), tensor.double(), rtol=0, atol=1e-6), (part, name)
    assert int(final["criterion"]["iteration"]) == 4
    for name in ("Data_Test_discriminative_e_recall.csv", "Data_Train_loss.csv"):
        rows, rows_ref = csv_rows(run_dir, name), csv_rows(reference["run_dir"], name)
        assert [r[0] for r in rows] == ["epoch", "0", "1"]
        np.testing.assert_allclose(np.float64(rows[1:]), np.float64(rows_ref[1:]), atol=1e-6)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_results(uninterrupted):
    args, reference = uninterrupted
    killed_dir = os.path.join(os.path.dirname(reference["run_dir"]), "killed")
    run_killed(args + ["--savename", "killed"], "--after-steps", "3")  # epoch 2, after its first step
    assert weights(os.path.join(killed_dir, resume.LAST_CHECKPOINT))["epoch"] == 0
    assert [r[0] for r in csv_rows(killed_dir, "Data_Train_loss.csv")] == ["epoch", "0"]
    assert not os.path.exists(os.path.join(killed_dir, "summary.json"))

    open(os.path.join(killed_dir, ".tmp_left_by_a_kill.pth"), "wb").close()
    with pytest.warns(UserWarning, match=r"killed/\.lock: took over the lock of a run that is gone \(pid "):
        resumed = main.main(["--checkpoint", killed_dir])
    assert not os.path.exists(os.path.join(killed_dir, ".tmp_left_by_a_kill.pth"))
    assert resumed["run_dir"] == killed_dir
    assert_same_results(killed_dir, reference)
    if "--data_cache" in args:  # the two stores (training, test) were decoded once, then read back from disk
        cache = os.path.join(os.path.dirname(os.path.dirname(killed_dir)), ".decoded_images")
        assert len([n for n in os.listdir(cache) if n.endswith(".npy")]) == 2


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint(tmp_path, capsys):
    source = write_cub_tree(str(tmp_path / "data"), n_classes=4, per_class=2)  # train: 4 images = 1 step
    run_dir = str(tmp_path / "runs" / "cub200" / "killed_saving")
    run_killed(TINY + ["--source_path", source, "--save_path", str(tmp_path / "runs"), "--n_epochs", "2",
                       "--savename", "killed_saving", "--kernels", "0"], "--during-save", "2")  # the write after epoch 2

    partial = [n for n in os.listdir(run_dir) if n.startswith(".tmp_")]
    assert len(partial) == 1  # the half-written file, never renamed
    with pytest.raises(Exception):
        torch.load(os.path.join(run_dir, partial[0]), weights_only=True)
    state = resume.load(os.path.join(run_dir, resume.LAST_CHECKPOINT))
    assert state["epoch"] == 0 and int(state["criterion"]["iteration"]) == 1
    assert [r[0] for r in csv_rows(run_dir, "Data_Train_loss.csv")] == ["epoch", "0", "1"]  # epoch 2 was logged

    dry = main.main(["--checkpoint", os.path.join(run_dir, resume.LAST_CHECKPOINT), "--dry_run"])
    assert dry["dry_run"] is True  # the state loads into a freshly built model, criterion, optimizer and sampler
    assert f"--checkpoint would continue {run_dir} at epoch 2/2." in capsys.readouterr().out
    assert len([n for n in os.listdir(run_dir) if n.startswith(".tmp_")]) == 1  # a dry run changes nothing


def test_resumed_options_come_from_the_run_and_only_some_may_change(tmp_path):
    import parameters

    saved = vars(parameters.parse(["--lr", "0.001", "--n_epochs", "5", "--seed", "7"]))
    saved["n_classes"] = 100  # runtime attributes in a saved opt are not flags
    opt = parameters.parse(["--checkpoint", "x", "--n_epochs", "9", "--kernels", "2"])
    merged = resume.merge_options(opt, ["--checkpoint", "x", "--n_epochs", "9", "--kernels", "2"], saved, parameters.build_parser())
    assert (merged.lr, merged.seed, merged.n_epochs, merged.kernels) == (0.001, 7, 9, 2)
    assert not hasattr(merged, "n_classes")
    same = resume.merge_options(parameters.parse(["--lr", "0.001"]), ["--lr", "0.001"], saved, parameters.build_parser())
    assert same.lr == 0.001 and same.n_epochs == 5
    argv = ["--checkpoint", "x", "--lr", "0.01", "--loss_s2sd_target_dims", "8", "16"]
    with pytest.raises(UsageError) as err:
        resume.merge_options(parameters.parse(argv), argv, saved, parameters.build_parser())
    assert str(err.value) == ("--checkpoint: a resumed run keeps its settings, and these flags differ: "
                              "--loss_s2sd_target_dims 8 16 (the run has 512 1024 1536 2048); --lr 0.01 (the run has 0.001). "
                              "Drop them, or start a new run")


def test_checkpoint_paths_that_cannot_resume(tmp_path, capsys):
    empty = tmp_path / "run"
    empty.mkdir()
    with pytest.raises(UsageError, match=f"--checkpoint {empty}: no checkpoint_last.pth.tar in this folder"):
        resume.locate(str(empty))
    with pytest.raises(UsageError, match="no such file or folder"):
        resume.locate(str(tmp_path / "nope"))
    best = tmp_path / "checkpoint_Test_discriminative_e_recall@1.pth.tar"
    torch.save({"model": {}, "epoch": 3, "metric": "e_recall@1"}, best)
    with pytest.raises(UsageError, match="not a resumable checkpoint .best-metric checkpoints hold the model only"):
        resume.load(str(best))
    broken = tmp_path / "broken.pth.tar"
    broken.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(UsageError) as err:
        resume.load(str(broken))
    assert str(err.value) == (f"--checkpoint {broken}: not a checkpoint this program wrote, or a damaged one; pass "
                              "a run folder or its checkpoint_last.pth.tar")
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--checkpoint", str(empty)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("main.py: error: --checkpoint ")


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import random

    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = resume.rng_state(generator)
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=generator))
    torch.manual_seed(0), np.random.seed(0), random.seed(0), generator.manual_seed(0)
    resume.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), generator)
    got = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=generator))
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and torch.equal(got[3], expected[3])


def test_a_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from criteria.s2sd import S2SD

    monkeypatch.setenv("WANDB_MODE", "disabled")
    source = write_cub_tree(str(tmp_path / "data"), n_classes=4, per_class=2)
    forward = S2SD.forward

    def poisoned(self, *args, **kwargs):
        loss = forward(self, *args, **kwargs)
        return loss * float("nan") if int(self.iteration) == 2 else loss  # the second epoch's step

    monkeypatch.setattr(S2SD, "forward", poisoned)
    args = TINY + ["--source_path", source, "--save_path", str(tmp_path / "runs"), "--n_epochs", "3",
                   "--savename", "nan", "--kernels", "0"]
    with pytest.raises(SystemExit) as exit_info:
        main.main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # tqdm bars share stderr
    run_dir = str(tmp_path / "runs" / "cub200" / "nan")
    last = os.path.join(run_dir, resume.LAST_CHECKPOINT)
    assert exit_info.value.code == EXIT_DIVERGED == 3 and len(err) == 1
    assert err[0].startswith("main.py: error: loss became nan at epoch 2, step 1 (source ")
    assert err[0].endswith(f"; stopped, the last good checkpoint is {last}")
    assert "kl " in err[0] and "feat_kl " in err[0]
    assert resume.load(last)["epoch"] == 0


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_the_step_and_the_resumed_run_gives_the_uninterrupted_results(uninterrupted):
    """SIGTERM to the whole process group (the DataLoader worker gets it too, as from SLURM or a terminal) during
    step 3, the first of epoch 2; then SIGTERM and SIGINT again in the middle of writing the checkpoint. The step
    ends, the write completes, `last` holds epoch 1 and step 1 of epoch 2, one line says how to resume, status
    75; the resumed run draws the rest of epoch 2 as the uninterrupted run did."""
    args, reference = uninterrupted
    run_dir = os.path.join(os.path.dirname(reference["run_dir"]), "sigterm")
    last = os.path.join(run_dir, resume.LAST_CHECKPOINT)
    lines = run_interrupted(args + ["--savename", "sigterm"], "--signal-after-steps", "3", "--to-group",
                            "--signal-during-save", status=EXIT_INTERRUPTED)
    assert lines == [f"main.py: {name} again: the run is already stopping and saves first; SIGKILL would stop it "
                     "now and keep the previous checkpoint" for name in ("SIGTERM", "SIGINT")] + [
        f"main.py: interrupted by SIGTERM at epoch 2/2, step 1/2; saved in {last}; resume with: "
        f"python main.py --checkpoint {run_dir}"]
    state = resume.load(last)
    assert state["epoch"] == 0 and state["progress"]["step"] == 1 and int(state["criterion"]["iteration"]) == 3
    assert [r[0] for r in csv_rows(run_dir, "Data_Train_loss.csv")] == ["epoch", "0"]
    assert [n for n in os.listdir(run_dir) if n.startswith(".")] == []  # no temporary file, no lock

    resumed = main.main(["--checkpoint", run_dir])
    assert resumed["run_dir"] == run_dir
    assert_same_results(run_dir, reference)
