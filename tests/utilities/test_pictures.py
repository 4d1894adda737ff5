"""Progression plots, retrieval grids and t-SNE maps: valid PNGs with the right panels, curves and points."""
import csv
import os

import numpy as np
import pytest
from PIL import Image

from datasets.base import ArrayDataset
from evaluation import progression_plots
from evaluation.logger import RunLogger
from utilities import embedding_map, retrieval_grid
from utilities.retrieval_grid import QUERY, RIGHT, WRONG, Layout


def open_png(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(int)


def test_a_plot_with_twelve_curves_draws_each_in_its_own_colour(tmp_path):
    epochs = np.arange(6)
    curves = {f"segment_{i}": np.full(6, float(i)) for i in range(12)}  # flat, well separated lines
    path = str(tmp_path / "Graph_Test_many.png")
    progression_plots.plot_group(path, "many", "Test: many", epochs, curves)
    pixels = open_png(path)
    colours = progression_plots.curve_colours(12)
    assert len({tuple(np.round(c, 3)) for c in colours}) == 12
    for colour in colours:
        target = np.round(np.asarray(colour) * 255).astype(int)
        near = (np.abs(pixels - target).max(axis=2) <= 6).sum()
        assert near > 200, colour  # a 2.5 pt line across the axes, not just its legend entry


def test_draw_all_writes_one_png_per_logged_group(tmp_path):
    logger = RunLogger(str(tmp_path))
    for epoch in range(3):
        logger.log_group("training", "loss", {"loss": 1.0 / (epoch + 1), "kl": 0.1}, epoch)
        logger.log_metrics("testing", {"discriminative": {"e_recall@1": 0.1 * epoch, "nmi": 0.5}}, epoch)
    written = progression_plots.draw_all(str(tmp_path))
    assert sorted(os.path.basename(p) for p in written) == [
        "Graph_Test_discriminative_e_recall.png", "Graph_Test_discriminative_nmi.png", "Graph_Train_loss.png"]
    for path in written:
        assert open_png(path).shape == (420, 700, 3)


def grey_dataset(n, labels):
    """Item i is a 12 x 12 image of constant grey 10 * i, so a panel shows which item it holds."""
    images = np.stack([np.full((12, 12), 10 * i, dtype=np.uint8) for i in range(n)])
    return ArrayDataset(images, labels, [f"c{c}" for c in range(max(labels) + 1)], transform=None)


def test_retrieval_grid_panels_hold_the_nearest_items_framed_by_correctness(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 4)
    features = rng.normal(size=(20, 8)).astype(np.float32) + labels[:, None]  # classes drift apart along the diagonal
    dataset = grey_dataset(20, labels)
    queries = retrieval_grid.pick_queries(20, 6, seed=1)
    assert np.array_equal(queries, retrieval_grid.pick_queries(20, 6, seed=1)) and len(set(queries)) == 6
    path = str(tmp_path / "grid.png")
    neighbours = retrieval_grid.draw(path, dataset, features, labels, queries, k=4, title="Test after epoch 1")

    distances = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    assert np.array_equal(neighbours, np.argsort(distances, axis=1, kind="stable")[queries, :4])
    assert (neighbours != queries[:, None]).all()

    pixels = open_png(path)
    layout = Layout()
    assert pixels.shape[:2][::-1] == layout.size(6, 5)
    for r, query in enumerate(queries):
        for c, item in enumerate([query, *neighbours[r]]):
            x, y = layout.left(c), layout.top(r)
            expected = QUERY if c == 0 else (RIGHT if labels[item] == labels[query] else WRONG)
            assert tuple(pixels[y + 1, x + 1]) == expected  # the frame
            centre = pixels[y + layout.panel // 2, x + layout.panel // 2]
            assert tuple(centre) == (10 * item,) * 3  # the item's own image
    assert {tuple(pixels[layout.top(r) + 1, layout.left(c) + 1]) for r in range(6) for c in range(1, 5)} <= {RIGHT, WRONG}


def test_tsne_map_subsamples_and_separates_distant_classes(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    features = rng.normal(scale=0.05, size=(120, 16)) + 5 * np.eye(16)[labels]
    path = embedding_map.draw(str(tmp_path), "Test", features, labels, n_points=80, seed=0)
    assert open_png(path).shape == (700, 700, 3)
    with open(tmp_path / "tsne_Test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    index = np.array([int(r["index"]) for r in rows])
    assert len(rows) == 80 and len(set(index)) == 80
    assert np.array_equal(index, embedding_map.subsample(120, 80, seed=0))
    assert [int(r["label"]) for r in rows] == labels[index].tolist()
    xy = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[index][d.argmin(1)] == labels[index]).all()  # every point's 2-D neighbour is of its class


@pytest.mark.parametrize("n_items,n_points", [(5, 10), (10, 10)])
def test_tsne_subsample_keeps_everything_when_small(n_items, n_points):
    assert np.array_equal(embedding_map.subsample(n_items, n_points, seed=3), np.arange(n_items))
