"""Datasets: `select(name, opt, source_path)` returns the splits of a dataset.

A dataset module registers `(root, opt) -> Layout` (datasets/layout.py): the class names, the training
images, and either the test images or In-Shop's query and gallery images. `select` turns it into
`DMLDataset`s (items `(label, image_tensor, index)`, labels 0..C-1 within each split):

* `training`: training images, training transforms (fed by the batch sampler);
* `evaluation`: the same images, evaluation transforms (the "Train" metrics);
* `testing`: unseen classes, evaluation transforms, evaluated all against all; or, for a query/gallery
  layout, `testing_query` and `testing_gallery`, labelled jointly (same label = same item in both);
* with --use_tv_split, `validation`: classes (or, with --tv_split_by_samples, images) taken out of the
  training images, evaluated all against all, whatever the test protocol of the dataset.

Transforms follow the input convention of the backbone (`architectures.input_convention(--arch)`).
"""
from __future__ import annotations

import os
from typing import List, Sequence

import numpy as np

import architectures
from datasets import transforms
from datasets.base import ArrayDataset, DMLDataset, FileDataset, relabel, train_val_split
from datasets.layout import Layout, Part
from datasets.samplers import SAMPLERS, select as select_sampler  # noqa: F401
from utilities.errors import UsageError
from utilities.registry import Registry

REGISTRY: Registry = Registry("dataset", "--dataset")
#: datasets shipped in the repository (no --source_path) -> (PIL mode of their images, their background value,
#: which augmentation fills in): glyphs are white ink on black, icons are RGB over white
EMBEDDED = {"glyphs": ("L", 0), "icons": ("RGB", 255)}
#: datasets whose tree is --source_path itself rather than <source_path>/<name>
TREE_AT_SOURCE = {"folder"}


def dataset_root(name: str, source_path: str) -> str:
    """`<source_path>/<name>`, or `source_path` itself when it already is the dataset folder."""
    candidate = os.path.join(source_path, name)
    if os.path.isdir(candidate):
        return candidate
    if os.path.basename(os.path.normpath(source_path)) == name and os.path.isdir(source_path):
        return source_path
    raise UsageError(f"--source_path: dataset folder not found: {candidate}")


def _root(name: str, source_path: str):
    if name in EMBEDDED:
        return None
    if name in TREE_AT_SOURCE:
        if not os.path.isdir(source_path):
            raise UsageError(f"--source_path: folder not found: {source_path}")
        return source_path
    return dataset_root(name, source_path)


def _dataset(sources, labels: np.ndarray, class_names: Sequence[str], transform) -> DMLDataset:
    if isinstance(sources, np.ndarray):
        return ArrayDataset(sources, labels, class_names, transform)
    return FileDataset(sources, labels, class_names, transform)


def _make(part: Part, class_names: List[str], transform) -> DMLDataset:
    labels, names = relabel(part.labels, class_names)
    return _dataset(part.sources, labels, names, transform)


def _make_joint(parts: Sequence[Part], class_names: List[str], transform) -> List[DMLDataset]:
    """One dataset per part, labelled over the union of their classes so that labels compare across parts."""
    labels, names = relabel(np.concatenate([p.labels for p in parts]), class_names)
    bounds = np.cumsum([0] + [len(p) for p in parts])
    return [_dataset(p.sources, labels[a:b], names, transform) for p, a, b in zip(parts, bounds[:-1], bounds[1:])]


def select(name: str, opt, source_path: str) -> dict:
    build = REGISTRY.lookup(name)
    convention = architectures.input_convention(opt.arch)
    try:
        layout: Layout = build(_root(name, source_path), opt)
    except OSError as err:  # an unreadable folder or info file
        where = err.filename or source_path
        raise UsageError(f"--source_path: cannot read {where} ({err.strerror or type(err).__name__}); make the "
                         "dataset's folders and files readable") from None
    if name in EMBEDDED:
        def make_transform(train):
            return transforms.glyph(train, convention, fill=EMBEDDED[name][1], size=getattr(opt, "resolution", None))
    else:
        def make_transform(train):
            return transforms.photo(opt, train, convention)
    names, train = layout.class_names, layout.training
    splits = {}
    if opt.use_tv_split:
        keep, val = train_val_split(train.labels, opt, train.groups)
        splits["validation"] = _make(train.subset(val), names, make_transform(False))
        train = train.subset(keep)
    splits["training"] = _make(train, names, make_transform(True))
    splits["evaluation"] = _make(train, names, make_transform(False))
    if layout.testing is not None:
        splits["testing"] = _make(layout.testing, names, make_transform(False))
    else:
        splits["testing_query"], splits["testing_gallery"] = _make_joint([layout.query, layout.gallery], names,
                                                                         make_transform(False))
    return splits


# Importing the dataset modules fills REGISTRY.
from datasets import cars196, cub200, folder, glyphs, icons, inshop, online_products  # noqa: E402,F401
