"""Under torchrun with 2 processes (gloo), the loss of the global batch and every gradient equal one process's
on the same global batch, and the weights stay together over steps (tests/distributed/gradient_worker.py)."""
import json
import os

import pytest

from tests.distributed.launch import torchrun

#: Relative differences allowed: the loss and every gradient at the same weights (the issue's bar), and every
#: weight after 4 SGD steps with momentum taken apart (float summation order differs, nothing else).
GRADIENT_TOLERANCE, WEIGHT_TOLERANCE = 1e-5, 1e-5


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "gradients.json"
    proc = torchrun(os.path.join("tests", "distributed", "gradient_worker.py"), str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
        return json.load(f)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["s2sd_multisimilarity", "margin_distance"])
def test_two_processes_compute_the_single_process_loss_and_gradients(compared, case):
    assert compared["world_size"] == 2
    for rank in compared["ranks"]:
        steps = rank[case]["steps"]
        assert len(steps) == 4
        for step in steps:
            assert step["loss"] > 0 and step["grad_norm"] > 0  # the miners found tuples: something to compare
            assert step["loss_rel"] <= GRADIENT_TOLERANCE, step
            assert step["grad_rel"] <= GRADIENT_TOLERANCE, step
        assert rank[case]["weights_rel"] <= WEIGHT_TOLERANCE
    # every trainable part is compared: backbone, S2SD heads (2 x 4 tensors) or the margin loss's class betas
    assert steps[0]["n_grads"] == {"s2sd_multisimilarity": 62 + 8, "margin_distance": 62 + 1}[case]
    assert compared["ranks"][0][case] == compared["ranks"][1][case]  # both ranks took the same steps


@pytest.mark.slow
def test_evaluation_shares_of_different_lengths_are_gathered_in_rank_order_without_padding(compared):
    for rank in compared["ranks"]:
        assert rank["gathered"]["uneven"] == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
        assert rank["gathered"]["one_empty"] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
