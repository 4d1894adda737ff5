"""Datasets: `select(name, opt, source_path)` returns the splits of a dataset.

Returns `{"training", "evaluation", "testing"[, "validation"]}`: `training` (train images, train
transforms, fed by the batch sampler), `evaluation` (train images, eval transforms: the "Train" metrics),
`testing` (unseen classes, eval transforms) and, with --use_tv_split, `validation`. Each item is
`(label, image_tensor, index)`.

A dataset module registers a function `(root, opt) -> (sources, labels, class_names, n_train_classes)`,
where sources are file paths or an N x H x W uint8 array, labels run over all classes in split order, and
the first `n_train_classes` classes train.
"""
from __future__ import annotations

import os

import numpy as np

from datasets import transforms
from datasets.base import ArrayDataset, FileDataset, relabel, train_val_split
from datasets.samplers import SAMPLERS, select as select_sampler  # noqa: F401
from utilities.errors import UsageError
from utilities.registry import Registry

REGISTRY: Registry = Registry("dataset", "--dataset")
EMBEDDED = {"glyphs"}


def dataset_root(name: str, source_path: str) -> str:
    """`<source_path>/<name>`, or `source_path` itself when it already is the dataset folder."""
    candidate = os.path.join(source_path, name)
    if os.path.isdir(candidate):
        return candidate
    if os.path.basename(os.path.normpath(source_path)) == name and os.path.isdir(source_path):
        return source_path
    raise UsageError(f"--source_path: dataset folder not found: {candidate}")


def _subset(sources, mask: np.ndarray):
    if isinstance(sources, np.ndarray):
        return sources[mask]
    return [s for s, keep in zip(sources, mask) if keep]


def _make(sources, labels, class_names, transform):
    labels, names = relabel(labels, class_names)
    if isinstance(sources, np.ndarray):
        return ArrayDataset(sources, labels, names, transform)
    return FileDataset(sources, labels, names, transform)


def select(name: str, opt, source_path: str) -> dict:
    build = REGISTRY.lookup(name)
    root = None if name in EMBEDDED else dataset_root(name, source_path)
    sources, labels, class_names, n_train = build(root, opt)
    make_transform = transforms.glyph if name in EMBEDDED else (lambda train: transforms.photo(opt, train))
    train_mask = labels < n_train
    train_sources, train_labels = _subset(sources, train_mask), labels[train_mask]
    splits = {"testing": _make(_subset(sources, ~train_mask), labels[~train_mask], class_names, make_transform(False))}
    if opt.use_tv_split:
        keep, val = train_val_split(train_labels, opt)
        splits["validation"] = _make(_subset(train_sources, val), train_labels[val], class_names, make_transform(False))
        train_sources, train_labels = _subset(train_sources, keep), train_labels[keep]
    splits["training"] = _make(train_sources, train_labels, class_names, make_transform(True))
    splits["evaluation"] = _make(train_sources, train_labels, class_names, make_transform(False))
    return splits


# Importing the dataset modules fills REGISTRY.
from datasets import cub200, glyphs  # noqa: E402,F401
