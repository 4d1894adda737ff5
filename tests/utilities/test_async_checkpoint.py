"""Background checkpoint writes: what is written is the state at the moment `save` was called."""
import os

import pytest
import torch

from utilities.async_checkpoint import CheckpointWriter, snapshot


def test_a_snapshot_shares_nothing_with_the_live_state():
    weight = torch.zeros(3)
    history = {"test/e_recall@1": [0.5]}
    state = {"model": {"w": weight}, "history": history, "rng": (1, torch.ones(2)), "epoch": 3}
    copy = snapshot(state)
    weight += 1
    history["test/e_recall@1"].append(0.7)
    state["rng"][1].zero_()
    assert torch.equal(copy["model"]["w"], torch.zeros(3)) and copy["history"] == {"test/e_recall@1": [0.5]}
    assert torch.equal(copy["rng"][1], torch.ones(2)) and isinstance(copy["rng"], tuple) and copy["epoch"] == 3


def test_writes_land_in_order_and_a_failed_write_is_raised_by_wait(tmp_path):
    writer = CheckpointWriter()
    weight = torch.zeros(2)
    path = str(tmp_path / "checkpoint_last.pth.tar")
    for value in range(3):
        weight.fill_(value)
        writer.save({"w": weight}, path)
    weight.fill_(9)
    writer.wait()
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.full((2,), 2.0))
    writer.save({"w": weight}, str(tmp_path / "missing_folder" / "x.pth"))
    with pytest.raises(FileNotFoundError):
        writer.wait()
    writer.close()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp_")] == []
