"""benchmarks/margin_normaliser.py on a few glyph classes: one line for the fresh embedding and one per training
epoch, each ratio N_or / N_terms in [1/2, 1] (a smoke run; the figures come from the script, never from a test)."""
import pytest

from tests.conftest import glyph_subset

pytestmark = pytest.mark.usefixtures("single_thread")


def test_prints_the_ratio_for_the_fresh_embedding_and_each_epoch(load_benchmark, capsys):
    load_benchmark("margin_normaliser").main(["--epochs", "1", "--bs", "8", "--embed_dim", "16", "--threads", "1",
                                              "--steps", "2", "--no_upper_cutoff"],
                                             dataset=glyph_subset(range(8), 4, train=True))
    out = capsys.readouterr().out.splitlines()
    assert "distance miner with no upper cutoff" in out[0]
    rows = [line for line in out if " ratio " in line]
    assert [row.split(" ratio ")[0].strip() for row in rows] == ["fresh embedding", "training epoch 1"]
    assert all(0.5 <= float(row.split(" ratio ")[1].split()[0]) <= 1.0 for row in rows)
    assert all("2 batches); active terms: pos " in row and row.endswith(" of the triplets") for row in rows)
