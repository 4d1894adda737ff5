"""Stop signals: deferred to the end of a step once a run writes, immediate while it is set up; an epoch stopped
between two steps continues exactly, including augmentations drawn in the main process (in-memory datasets).

The end-to-end run (a real SIGTERM to main.py's process group, then signals during the checkpoint write) is in
tests/test_resume.py."""
import io
import os
import signal
import threading
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

import criteria
import main
from datasets.embedding_storage import EmbeddingStorage
from datasets.samplers import ClassRandomSampler, GreedyCoresetSampler
from tests.conftest import glyph_subset, write_cub_tree
from utilities import async_checkpoint, resume
from utilities.checkpoint import save_atomic
from utilities.errors import Interrupted
from utilities.precision import Precision
from utilities.preemption import StopSignals
from utilities.training import EpochInterrupted, EpochProgress, train_one_epoch


def test_a_signal_while_the_run_writes_waits_for_the_next_step_and_a_second_one_is_only_noted(capsys):
    previous = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        stop.defer()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous
    assert capsys.readouterr().err == ("main.py: SIGINT again: the run is already stopping and saves first; SIGKILL "
                                       "would stop it now and keep the previous checkpoint\n")


def test_a_signal_while_the_run_is_set_up_stops_it_at_once():
    with pytest.raises(Interrupted) as err, StopSignals():
        os.kill(os.getpid(), signal.SIGINT)
    assert str(err.value) == "interrupted by SIGINT while setting up the run"
    assert err.value.exit_status == 128 + signal.SIGINT and err.value.checkpoint is None


def test_ctrl_c_while_the_data_is_read_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    def interrupted_select(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(main.datasets, "select", interrupted_select)
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest was started in the background
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--dataset", "glyphs", "--arch", "slimresnet18", "--not_pretrained", "--save_path", str(tmp_path)])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "main.py: interrupted by SIGINT while setting up the run; nothing to resume\n"
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is handler_before


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.head = nn.Linear(4, 8)

    def forward(self, images):
        maps = F.relu(self.conv(images))
        pooled = maps.mean((2, 3))
        return {"embeds": F.normalize(self.head(pooled), dim=1), "avg_features": pooled, "features": maps}


def fresh_run(seed: int, storage_sampler: bool = False):
    """Model, criterion (margin with the distance miner: torch random numbers), optimizer and a loader of glyphs
    with the training warp drawn in this process, all seeded by `seed`; the loader's batches are class_random's,
    or with `storage_sampler` greedy_coreset's over a storage filled with random embeddings."""
    torch.manual_seed(seed)
    dataset = glyph_subset(range(6), per_class=4, train=True)
    if storage_sampler:
        storage = EmbeddingStorage(len(dataset), 8)
        storage.fill(F.normalize(torch.randn(len(dataset), 8), dim=1))
        sampler = GreedyCoresetSampler(dataset.labels, 8, 2, storage, seed=seed, pool_size=12)
    else:
        sampler = ClassRandomSampler(dataset.labels, 8, 2, seed=seed)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=0, generator=torch.Generator().manual_seed(seed))
    model, criterion = TinyNet(), criteria.MarginLoss(n_classes=6)
    optimizer = torch.optim.Adam([*model.parameters(), *criterion.parameters()], lr=1e-2)
    return dict(model=model, criterion=criterion, optimizer=optimizer, scheduler=None, loader=loader)


def epoch(parts, progress=None, should_stop=lambda: False):
    return train_one_epoch(parts["model"], parts["criterion"], parts["optimizer"], parts["loader"], "cpu", 0,
                           progress or EpochProgress.starting(parts["loader"]), should_stop)


def stopped_and_restored(seed: int, steps_before_stop: int, storage_sampler: bool = False):
    """A fresh run of `seed` stopped after `steps_before_stop` steps of its first epoch, its `last` checkpoint
    written and loaded as main.py does, and restored into a run of another seed: (that run, its progress)."""
    stopped = fresh_run(seed, storage_sampler)
    answers = iter([False] * (steps_before_stop - 1) + [True])
    with pytest.raises(EpochInterrupted) as err:
        epoch(stopped, should_stop=lambda: next(answers))
    assert err.value.progress.step == steps_before_stop
    buffer = io.BytesIO()
    torch.save(resume.training_state(epoch=-1, **stopped, history={}, train_seconds=0.0, opt_dict={}, online=None,
                                     progress=err.value.progress), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    continued = fresh_run(seed + 92, storage_sampler)  # other weights, sampler and random states (and storage)
    start_epoch, progress = resume.restore(state, **continued)
    assert start_epoch == 0 and progress.step == steps_before_stop
    return continued, progress


def test_an_epoch_stopped_after_a_step_continues_with_the_random_numbers_of_an_uninterrupted_one():
    reference = fresh_run(7)
    expected = epoch(reference)
    rng_after = torch.get_rng_state()  # the next epoch starts from it

    continued, progress = stopped_and_restored(7, steps_before_stop=2)  # of 3
    stats = epoch(continued, progress)
    assert {k: v for k, v in stats.items() if k != "seconds"} == {k: v for k, v in expected.items() if k != "seconds"}
    for name, tensor in reference["model"].state_dict().items():
        assert torch.equal(continued["model"].state_dict()[name], tensor), name
    assert torch.equal(torch.get_rng_state(), rng_after)


def test_a_storage_sampler_epoch_stopped_after_a_step_continues_with_the_storage_of_an_uninterrupted_one():
    """The epoch's batches are chosen again from the storage as the epoch began; the storage then gets back
    the updates of the steps done before the stop, so the epoch and the next one's batches are unchanged."""
    reference = fresh_run(7, storage_sampler=True)
    expected = epoch(reference)

    continued, progress = stopped_and_restored(7, steps_before_stop=1, storage_sampler=True)  # of 3
    stats = epoch(continued, progress)
    assert {k: v for k, v in stats.items() if k != "seconds"} == {k: v for k, v in expected.items() if k != "seconds"}
    for name, tensor in reference["model"].state_dict().items():
        assert torch.equal(continued["model"].state_dict()[name], tensor), name
    storages = [run["loader"].batch_sampler.storage.embeddings for run in (reference, continued)]
    assert torch.equal(*storages)
    assert list(continued["loader"].batch_sampler) == list(reference["loader"].batch_sampler)


def test_an_fp16_epoch_stopped_and_continued_carries_the_grad_scaler():
    """The scale grows every step here (growth_interval 1), so a continued epoch whose scaler started afresh
    would take other steps; the checkpoint's `scaler` entry makes it take the same ones."""
    def fp16():
        return Precision(torch.device("cpu"), torch.float16,
                         scaler=torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=1))

    reference, reference_precision = fresh_run(7), fp16()
    expected = train_one_epoch(*(reference[k] for k in ("model", "criterion", "optimizer", "loader")), "cpu", 0,
                               EpochProgress.starting(reference["loader"]), precision=reference_precision)

    stopped, stopped_precision = fresh_run(7), fp16()
    with pytest.raises(EpochInterrupted) as err:
        train_one_epoch(*(stopped[k] for k in ("model", "criterion", "optimizer", "loader")), "cpu", 0,
                        EpochProgress.starting(stopped["loader"]), lambda: True, precision=stopped_precision)
    buffer = io.BytesIO()
    torch.save(resume.training_state(epoch=-1, **stopped, history={}, train_seconds=0.0, opt_dict={}, online=None,
                                     progress=err.value.progress, precision=stopped_precision), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["scaler"]["scale"] == 2.0**9  # one step taken: grown once

    continued = fresh_run(99)
    continued_precision = Precision(torch.device("cpu"), torch.float16, scaler=torch.amp.GradScaler("cpu"))
    _, progress = resume.restore(state, **continued, precision=continued_precision)
    assert continued_precision.scaler.get_scale() == 2.0**9
    stats = train_one_epoch(*(continued[k] for k in ("model", "criterion", "optimizer", "loader")), "cpu", 0, progress,
                            precision=continued_precision)
    assert {k: v for k, v in stats.items() if k != "seconds"} == {k: v for k, v in expected.items() if k != "seconds"}
    assert continued_precision.scaler.get_scale() == reference_precision.scaler.get_scale() == 2.0**11
    for name, tensor in reference["model"].state_dict().items():
        assert torch.equal(continued["model"].state_dict()[name], tensor), name


def test_a_stop_waits_for_the_background_writer_before_it_saves_the_step(tmp_path, monkeypatch, capsys):
    """The end-of-epoch `last` checkpoint is written in the background, slowly here; a SIGTERM in the next epoch
    saves that epoch's step only after that write has landed, so the step's checkpoint is the one left."""
    source = write_cub_tree(str(tmp_path / "data"), n_classes=8, per_class=2)  # 8 training images: 2 steps of 4
    slow_writes = []

    def slow_save(state, path):
        if path.endswith(resume.LAST_CHECKPOINT):
            time.sleep(2)  # longer than the step that the signal lets finish
            slow_writes.append(state.get("progress"))
        save_atomic(state, path)

    def signalled_in_epoch_2(*args, **kwargs):
        if args[5] == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # before its first step: it stops after that step
        return train_one_epoch(*args, **kwargs)

    monkeypatch.setattr(async_checkpoint, "save_atomic", slow_save)
    monkeypatch.setattr(main, "train_one_epoch", signalled_in_epoch_2)
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--dataset", "cub200", "--source_path", source, "--save_path", str(tmp_path / "runs"),
                   "--arch", "slimresnet18_normalize", "--not_pretrained", "--embed_dim", "8", "--bs", "4",
                   "--resolution", "24", "--kernels", "0", "--no_train_metrics", "--tsne_points", "0",
                   "--evaluation_metrics", "e_recall@1", "--data_cache", "ram", "--n_epochs", "2",
                   "--savename", "stopped"])
    run_dir = tmp_path / "runs" / "cub200" / "stopped"
    assert exit_info.value.code == 75
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"main.py: interrupted by SIGTERM at epoch 2/2, step 1/2; saved in {run_dir / resume.LAST_CHECKPOINT}; "
        f"resume with: python main.py --checkpoint {run_dir}")
    for thread in threading.enumerate():  # a write still queued would land now, over the step's checkpoint
        if thread.name.startswith("checkpoint-writer"):
            thread.join(timeout=3)
    assert slow_writes == [None]  # epoch 1's `last` went through the background writer
    state = resume.load(str(run_dir / resume.LAST_CHECKPOINT))
    assert state["epoch"] == 0 and state["progress"]["step"] == 1



CRASH_AFTER_AN_EVALUATION = """
import sys
import main
import metrics

def fail(*args, **kwargs):
    raise RuntimeError("a bug, an out-of-memory error or a CUDA error after the workers started")

metrics.compute_metrics = fail  # after the evaluation loader's persistent workers embedded the test split
main.main(sys.argv[1:])
"""


def test_a_run_that_crashes_with_live_workers_exits(tmp_path):
    """Workers ignore SIGTERM (above), so multiprocessing's exit handler, which terminates daemon children with
    SIGTERM and then joins them, waited forever when an error left a worker alive (its iterator held by the
    traceback): a crashed run never exited and held its GPU. Now they are killed at exit, and the run's own
    error stays the last line. A CUB-layout run with 2 loader workers, failing in its first evaluation."""
    import subprocess
    import sys

    source = write_cub_tree(str(tmp_path / "data"), n_classes=8, per_class=2)
    args = ["--dataset", "cub200", "--source_path", source, "--save_path", str(tmp_path / "runs"), "--arch",
            "slimresnet18_normalize", "--not_pretrained", "--embed_dim", "8", "--bs", "4", "--resolution", "16",
            "--loss", "multisimilarity", "--n_epochs", "1", "--kernels", "2", "--no_train_metrics"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CRASH_AFTER_AN_EVALUATION, *args], cwd=root, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == \
        "RuntimeError: a bug, an out-of-memory error or a CUDA error after the workers started"
    assert time.monotonic() - started < 60
