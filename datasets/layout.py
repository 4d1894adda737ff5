"""The contract between a dataset module and `datasets.select`: which images train and which test.

A dataset module registers `(root, opt) -> Layout`. A `Layout` names every class once (`class_names`) and
holds `Part`s whose labels index that list:

* `training`: the training images (split further into training/validation by --use_tv_split);
* either `testing` (evaluated all against all: CUB200, CARS196, SOP, folders, glyphs)
* or `query` and `gallery` (In-Shop: each query is searched among the gallery images).

Layouts whose split is "the first n classes train" (sorted class order) use `Layout.first_classes`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np

Sources = Union[List[str], np.ndarray]


@dataclass
class Part:
    """Images of one role: `sources` (file paths, or an N x H x W uint8 array), `labels` (class ids into
    `Layout.class_names`) and optional `groups` (a super-class per image; the class-wise train/validation
    split is then made within each group)."""

    sources: Sources
    labels: np.ndarray
    groups: Optional[np.ndarray] = None

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.groups is not None:
            self.groups = np.asarray(self.groups, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask) -> "Part":
        mask = np.asarray(mask, dtype=bool)
        if isinstance(self.sources, np.ndarray):
            sources = self.sources[mask]
        else:
            sources = [s for s, keep in zip(self.sources, mask) if keep]
        return Part(sources, self.labels[mask], None if self.groups is None else self.groups[mask])


@dataclass
class Layout:
    class_names: List[str]
    training: Part
    testing: Optional[Part] = None
    query: Optional[Part] = None
    gallery: Optional[Part] = None

    def __post_init__(self):
        if (self.testing is None) == (self.query is None or self.gallery is None):
            raise ValueError("a Layout has either a testing part or both query and gallery parts")

    @classmethod
    def first_classes(cls, sources: Sources, labels: Sequence[int], class_names: List[str], n_train: int) -> "Layout":
        """Classes 0..n_train-1 train, the rest test."""
        everything = Part(sources, labels)
        train = everything.labels < n_train
        return cls(list(class_names), training=everything.subset(train), testing=everything.subset(~train))
