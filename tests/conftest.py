"""Shared fixtures: parsed options with overrides, miniature dataset trees in the real layouts, glyph subsets,
and the benchmark scripts as modules."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

import parameters


@pytest.fixture(scope="session", autouse=True)
def image_check_cache(tmp_path_factory):
    """The decode-check cache of the tests (datasets/image_check.py) in a temporary folder, not in ~/.cache;
    set in the environment, so runs in subprocesses use it too."""
    before = os.environ.get("S2SD_CACHE_DIR")
    os.environ["S2SD_CACHE_DIR"] = str(tmp_path_factory.mktemp("s2sd_cache"))
    yield os.environ["S2SD_CACHE_DIR"]
    if before is None:
        del os.environ["S2SD_CACHE_DIR"]
    else:
        os.environ["S2SD_CACHE_DIR"] = before


def make_opt(*argv: str, **overrides):
    """`parameters.parse(argv)`, then flag values set by keyword (`embed_dim=8` as `--embed_dim 8`); only
    flags: facts of the run such as n_classes are passed to what needs them, never added to `opt`."""
    opt = parameters.parse(list(argv))
    for key, value in overrides.items():
        if not hasattr(opt, key):
            raise AttributeError(f"make_opt: no flag sets '{key}'")
        setattr(opt, key, value)
    return opt


@pytest.fixture
def opt_factory():
    return make_opt


def write_cub_tree(root: str, n_classes: int, per_class: int, size=(20, 16), seed: int = 0) -> str:
    """`<root>/cub200/images/NNN.Class_k/img_i.jpg` with small random JPEGs; returns `root`."""
    rng = np.random.default_rng(seed)
    images = os.path.join(root, "cub200", "images")
    for c in range(1, n_classes + 1):
        folder = os.path.join(images, f"{c:03d}.Bird_{c}")
        os.makedirs(folder, exist_ok=True)
        colour = rng.integers(0, 255, 3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"img_{i}.jpg"))
    return root


@pytest.fixture
def cub_tree(tmp_path):
    """A miniature CUB200 tree factory: cub_tree(n_classes, per_class) -> source path."""
    def make(n_classes: int = 6, per_class: int = 3) -> str:
        return write_cub_tree(str(tmp_path / "data"), n_classes, per_class)
    return make


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for modules of many tiny tensor ops: on a loaded 2-core machine, thread hand-offs
    cost more than these ops, by an order of magnitude."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def glyph_subset(classes, per_class: int, offset: int = 0, train: bool = False):
    """An ArrayDataset of `per_class` glyph images (from the `offset`-th) of each class in `classes`, relabelled
    0..len(classes)-1, with the glyph transforms of training or evaluation."""
    import datasets
    from datasets import transforms
    from datasets.base import ArrayDataset

    arrays = datasets.glyphs.load_arrays()
    images, labels = arrays["images"], arrays["labels"]
    names = [str(n) for n in arrays["class_names"]]
    keep = np.concatenate([np.flatnonzero(labels == c)[offset:offset + per_class] for c in classes])
    relabelled = np.searchsorted(np.asarray(classes), labels[keep])
    return ArrayDataset(images[keep], relabelled, [names[c] for c in classes], transforms.glyph(train))


@pytest.fixture
def load_benchmark():
    """load_benchmark("criteria_speed") -> the module benchmarks/criteria_speed.py."""
    def load(name: str):
        path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", f"{name}.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
