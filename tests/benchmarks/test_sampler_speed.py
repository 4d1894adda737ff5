"""benchmarks/sampler_speed.py on a tiny synthetic storage: one row per sampler, class_random the base of the
ratios (a smoke run; the speed figures come from the script, never from a test)."""
import pytest

import datasets

pytestmark = pytest.mark.usefixtures("single_thread")


def test_prints_a_cost_and_ratios_per_sampler(load_benchmark, capsys):
    load_benchmark("sampler_speed").main(["--n", "120", "--classes", "12", "--dim", "8", "--bs", "8", "--pool", "24",
                                          "--ncomps", "2", "--rounds", "1", "--threads", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if " ms/step " in line]
    assert [row.split()[0] for row in rows] == list(datasets.SAMPLERS)
    assert "x     1.0 class_random" in rows[0] and rows[0].endswith("step x 1.00")
    assert all(float(row.split()[1]) > 0 for row in rows)
