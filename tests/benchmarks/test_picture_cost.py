"""benchmarks/picture_cost.py on a few glyph classes: one epoch of the quickstart setup, then each picture as
a share of it (a smoke run; the figures come from the script, never from a test)."""
import pytest

import datasets
from tests.conftest import glyph_subset

pytestmark = pytest.mark.usefixtures("single_thread")


def few_glyphs(name, opt, source_path):
    train, test = list(range(6)), list(range(100, 106))
    return {"training": glyph_subset(train, 4, train=True), "evaluation": glyph_subset(train, 4),
            "testing": glyph_subset(test, 4)}


def test_prints_each_picture_as_a_share_of_an_epoch(load_benchmark, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(datasets, "select", few_glyphs)
    load_benchmark("picture_cost").main_benchmark(["--tsne_points", "20"],
                                                  flags=["--bs", "8", "--kernels", "0", "--loss_s2sd_target_dims", "16"])
    lines = capsys.readouterr().out.splitlines()
    shares = [line for line in lines if "of an epoch" in line]
    assert lines[-4].startswith("one quickstart epoch (training ") and len(shares) == 3
    assert shares[2].startswith("t-SNE map of 20 points, once:")
    assert all(float(line.split(":")[1].split("%")[0]) > 0 for line in shares)
