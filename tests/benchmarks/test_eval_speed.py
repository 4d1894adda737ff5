"""benchmarks/eval_speed.py on tiny sizes: both sides agree on every shared metric and the table prints (a
smoke run; the speed figures come from the script, never from a test)."""
import pytest


@pytest.mark.slow  # three fresh interpreters import torch, faiss and PML: ~30 s on an idle 2-core machine
def test_shared_metrics_are_equal_and_both_sections_print(load_benchmark, capsys):
    status = load_benchmark("eval_speed").main(["--n", "120", "--classes", "12", "--dim", "8", "--threads", "1"])
    out = capsys.readouterr().out
    assert status == 0
    shared = [line for line in out.splitlines() if line.strip().startswith(("precision_at_1", "mean_average", "r_precision", "NMI"))]
    assert len(shared) == 4 and all(line.rstrip().endswith("equal") for line in shared)
    assert "time ratio PML / ours = " in out and "2. ours, full default set" in out and "e_recall@1000 1.0000" in out
