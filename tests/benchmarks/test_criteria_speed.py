"""benchmarks/criteria_speed.py runs and prints one row per loss (a smoke run on tiny sizes; the speed
figures themselves come from the script, never from a test)."""
import importlib.util
import os

import pytest

import criteria

pytest.importorskip("pytorch_metric_learning")
pytestmark = pytest.mark.usefixtures("single_thread")

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "criteria_speed.py")


def test_prints_a_ratio_row_for_every_loss(capsys):
    spec = importlib.util.spec_from_file_location("criteria_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status = module.main(["--bs", "12", "--dim", "8", "--n_classes", "6", "--repeats", "1", "--inner", "1",
                          "--max_ratio", "1e9"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert status == 0
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names == sorted(n for n in criteria.REGISTRY if n != "s2sd")
    assert all(float(row.split("|")[5]) > 0 for row in rows[1:])
