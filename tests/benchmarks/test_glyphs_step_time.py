"""benchmarks/glyphs_step_time.py on two variants, tiny batches: one row per variant, the first the base of
the ratios (a smoke run; the speed figures come from the script, never from a test)."""
import pytest

pytestmark = pytest.mark.usefixtures("single_thread")


def test_prints_a_median_and_a_ratio_per_variant(load_benchmark, capsys):
    load_benchmark("glyphs_step_time").main(["--rounds", "1", "--bs", "8", "--threads", "1", "--variants", "0", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if " s   x" in line]
    assert [row.split("  ")[0] for row in rows] == ["slimresnet18 scratch, 32 px", "efficientnet_lite0 ImageNet, 32 px"]
    assert rows[0].endswith("x 1.00") and float(rows[1].split(" s ")[0].split()[-1]) > 0
