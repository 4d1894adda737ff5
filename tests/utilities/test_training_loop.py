"""The training loop reads nothing back inside a step: the NaN check waits on the device and still names the
first bad step and its loss terms; the epoch's means equal those summed on the host."""
import math

import pytest
import torch

from utilities.training import EpochInterrupted, TrainingDiverged, train_one_epoch


class Scaled(torch.nn.Module):
    """embeds = w * x: one weight, so each step's loss is known."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return {"embeds": self.w * x, "avg_features": x, "features": x[:, :, None, None]}


class ScriptedLoss(torch.nn.Module):
    """Step k's loss is losses[k] * w (terms a = loss, b = 2 loss); counts its calls."""

    def __init__(self, losses):
        super().__init__()
        self.losses, self.calls = losses, 0
        self.last_tuple_count = None

    def forward(self, embeds, labels, **kwargs):
        value = self.losses[self.calls] * embeds.mean() / embeds.detach().mean()
        self.calls += 1
        self.last_terms = {"a": value.detach(), "b": 2 * value.detach()}
        self.last_tuple_count = torch.tensor(0 if self.calls == 2 else 3)
        return value


def batches(n):
    return [(torch.zeros(2, dtype=torch.long), torch.ones(2, 4), None) for _ in range(n)]


@pytest.mark.parametrize("check_every,stopped_after", [(1, 3), (5, 5), (50, 8)])
def test_a_nan_is_reported_at_its_step_whenever_it_is_read(check_every, stopped_after):
    losses = [0.5, 0.4, float("nan"), 0.3, float("inf"), 0.2, 0.1, 0.1]
    model, criterion = Scaled(), ScriptedLoss(losses)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with pytest.raises(TrainingDiverged) as err:
        train_one_epoch(model, criterion, optimizer, batches(8), "cpu", epoch=1, check_every=check_every)
    assert str(err.value) == "loss became nan at epoch 2, step 3 (a nan, b nan)"  # the first bad step, not a later one
    assert criterion.calls == stopped_after  # read every step, at step 5, or at the end of the epoch


def test_the_epoch_means_are_those_of_the_steps():
    losses = [0.5, 0.25, 0.125, 1.0]
    stats = train_one_epoch(Scaled(), ScriptedLoss(losses), torch.optim.SGD(Scaled().parameters(), lr=0.0),
                            batches(4), "cpu", epoch=0, check_every=3)
    assert stats["loss"] == sum(losses) / 4 and stats["a"] == pytest.approx(sum(losses) / 4)
    assert stats["b"] == pytest.approx(2 * sum(losses) / 4) and stats["degenerate_steps"] == 1
    assert math.isfinite(stats["seconds"])


def test_a_stop_reads_the_nan_check_first_so_a_diverged_state_is_never_handed_on_to_be_saved():
    losses = [0.5, float("nan"), 0.3, 0.2]
    criterion = ScriptedLoss(losses)
    with pytest.raises(TrainingDiverged) as err:  # not EpochInterrupted, whose progress the caller would save
        train_one_epoch(Scaled(), criterion, torch.optim.SGD(Scaled().parameters(), lr=0.0), batches(4), "cpu",
                        epoch=0, should_stop=lambda: criterion.calls == 3, check_every=50)
    assert str(err.value) == "loss became nan at epoch 1, step 2 (a nan, b nan)" and criterion.calls == 3


def test_a_stop_between_two_steps_carries_the_sums_so_far():
    losses = [0.5, 0.25, 0.125, 1.0]
    criterion = ScriptedLoss(losses)
    with pytest.raises(EpochInterrupted) as err:
        train_one_epoch(Scaled(), criterion, torch.optim.SGD(Scaled().parameters(), lr=0.0), batches(4), "cpu",
                        epoch=0, should_stop=lambda: criterion.calls == 3, check_every=50)
    progress = err.value.progress
    assert progress.step == 3 and progress.loss_sum == 0.875 and progress.degenerate == 1
    assert progress.counters()["term_sums"] == {"a": pytest.approx(0.875), "b": pytest.approx(1.75)}
