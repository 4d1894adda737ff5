"""Stop signals: deferred to the end of a step once a run writes, immediate while it is set up; an epoch stopped
between two steps continues exactly, including augmentations drawn in the main process (in-memory datasets).

The end-to-end run (a real SIGTERM to main.py's process group, then signals during the checkpoint write) is in
tests/test_resume.py."""
import io
import os
import signal

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

import criteria
import main
from datasets.samplers import ClassRandomSampler
from tests.conftest import glyph_subset
from utilities import resume
from utilities.errors import Interrupted
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
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--dataset", "glyphs", "--arch", "slimresnet18", "--not_pretrained", "--save_path", str(tmp_path)])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "main.py: interrupted by SIGINT while setting up the run; nothing to resume\n"
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.head = nn.Linear(4, 8)

    def forward(self, images):
        maps = F.relu(self.conv(images))
        pooled = maps.mean((2, 3))
        return {"embeds": F.normalize(self.head(pooled), dim=1), "avg_features": pooled, "features": maps}


def fresh_run(seed: int):
    """Model, criterion (margin with the distance miner: torch random numbers), optimizer and a loader of glyphs
    with the training warp drawn in this process, all seeded by `seed`."""
    torch.manual_seed(seed)
    dataset = glyph_subset(range(6), per_class=4, train=True)
    loader = DataLoader(dataset, batch_sampler=ClassRandomSampler(dataset.image_dict, len(dataset), 8, 2, seed),
                        num_workers=0, generator=torch.Generator().manual_seed(seed))
    model, criterion = TinyNet(), criteria.MarginLoss(n_classes=6)
    optimizer = torch.optim.Adam([*model.parameters(), *criterion.parameters()], lr=1e-2)
    return dict(model=model, criterion=criterion, optimizer=optimizer, scheduler=None, loader=loader)


def epoch(parts, progress=None, should_stop=lambda: False):
    return train_one_epoch(parts["model"], parts["criterion"], parts["optimizer"], parts["loader"], "cpu", 0,
                           progress or EpochProgress.starting(parts["loader"]), should_stop)


def test_an_epoch_stopped_after_a_step_continues_with_the_random_numbers_of_an_uninterrupted_one():
    reference = fresh_run(7)
    expected = epoch(reference)
    rng_after = torch.get_rng_state()  # the next epoch starts from it

    stopped = fresh_run(7)
    steps = iter([False, True])
    with pytest.raises(EpochInterrupted) as err:
        epoch(stopped, should_stop=lambda: next(steps))
    assert err.value.progress.step == 2  # of 3
    buffer = io.BytesIO()
    torch.save(resume.training_state(epoch=-1, **stopped, history={}, train_seconds=0.0, opt_dict={}, online=None,
                                     progress=err.value.progress), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    continued = fresh_run(99)  # other weights, sampler and random states: all must come from the checkpoint
    start_epoch, progress = resume.restore(state, **continued)
    assert start_epoch == 0 and progress.step == 2
    stats = epoch(continued, progress)
    assert {k: v for k, v in stats.items() if k != "seconds"} == {k: v for k, v in expected.items() if k != "seconds"}
    for name, tensor in reference["model"].state_dict().items():
        assert torch.equal(continued["model"].state_dict()[name], tensor), name
    assert torch.equal(torch.get_rng_state(), rng_after)
