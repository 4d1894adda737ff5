"""Datasets as (image source, label) lists, split helpers, and image-file scanning.

Every split is a `DMLDataset` whose item is `(label, image_tensor, index)`; labels run 0..C-1 within the
split and `class_names[label]` names the class. `image_dict[label]` lists the indices of a class.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datasets.image_check import decode_problems
from utilities.errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class DMLDataset(Dataset):
    """Base of every split: labels, class names, the class -> indices map, and the transform."""

    #: In-memory datasets load faster in the main process than through DataLoader workers.
    in_memory = False

    def __init__(self, labels: Sequence[int], class_names: Sequence[str], transform: Callable):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.transform = transform
        self.image_dict: Dict[int, List[int]] = {}
        for index, label in enumerate(self.labels.tolist()):
            self.image_dict.setdefault(label, []).append(index)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int):
        raise NotImplementedError

    def __getitem__(self, index: int) -> Tuple[int, torch.Tensor, int]:
        return int(self.labels[index]), self.transform(self.load(index)), index


class FileDataset(DMLDataset):
    """Images read from files with PIL and converted to RGB (`to_rgb`)."""

    def __init__(self, paths: Sequence[str], labels, class_names, transform):
        super().__init__(labels, class_names, transform)
        self.paths = list(paths)

    def load(self, index: int):
        with Image.open(self.paths[index]) as image:
            return to_rgb(image)


#: Pillow modes of 16-bit single-channel images (16-bit grayscale PNG, TIFF); "I" is how older Pillow opened them.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB version of `image`. 16-bit grayscale is scaled to 8 bits (v / 257, so 65535 -> 255) first:
    Pillow's own conversion clips every value above 255 to white."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


class ArrayDataset(DMLDataset):
    """uint8 images held in one array, grayscale (N x H x W) or colour (N x H x W x C); `load` returns a
    C x H x W uint8 tensor (C = 1 for grayscale)."""

    in_memory = True

    def __init__(self, images: np.ndarray, labels, class_names, transform):
        super().__init__(labels, class_names, transform)
        images = images[:, None] if images.ndim == 3 else np.moveaxis(images, -1, 1)
        self.images = torch.from_numpy(np.ascontiguousarray(images))

    def load(self, index: int) -> torch.Tensor:
        return self.images[index]


def scan_images(paths: Sequence[str]) -> List[bool]:
    """Which files decode in full (datasets/image_check.py); each one that does not is skipped with a warning
    that names it and says why."""
    reasons = decode_problems(paths)
    for path, reason in zip(paths, reasons):
        if reason:
            warnings.warn(f"skipping unreadable image {path} ({reason})")
    return [not reason for reason in reasons]


def is_hidden(name: str) -> bool:
    """Dot files and folders, including macOS resource forks (`._name`)."""
    return name.startswith(".")


def list_images(folder: str) -> List[str]:
    """Image files directly in `folder`, sorted, hidden files (.name, macOS ._name) skipped."""
    names = sorted(n for n in os.listdir(folder) if not is_hidden(n) and n.lower().endswith(IMAGE_SUFFIXES))
    return [os.path.join(folder, n) for n in names]


def sorted_class_folders(folder: str) -> List[Tuple[str, str]]:
    """[(name, path)] of the non-hidden subfolders of `folder`, sorted by name."""
    names = sorted(n for n in os.listdir(folder) if not is_hidden(n) and os.path.isdir(os.path.join(folder, n)))
    return [(n, os.path.join(folder, n)) for n in names]


def check_listed_files(paths: Sequence[str], listing: str) -> List[bool]:
    """For images named in an info file: every file must exist (else one error naming the first missing
    one and `listing`); unreadable ones are skipped with a warning. Returns the keep mask."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"{len(missing)} image(s) listed in {listing} are missing, e.g. {missing[0]}")
    return scan_images(paths)


def class_folders_to_samples(class_dirs: Sequence[Tuple[str, str]]):
    """[(class name, folder)] -> (paths, labels 0..C-1, class names), dropping unreadable images.

    A class left without a readable image is an error naming its folder.
    """
    paths, labels, names = [], [], []
    for label, (name, folder) in enumerate(class_dirs):
        files = list_images(folder)
        paths.extend(files)
        labels.extend([label] * len(files))
        names.append(name)
    keep = scan_images(paths)
    paths = [p for p, k in zip(paths, keep) if k]
    labels = [lab for lab, k in zip(labels, keep) if k]
    present = set(labels)
    for label, (name, folder) in enumerate(class_dirs):
        if label not in present:
            raise UsageError(f"class '{name}' has no readable image in {folder}")
    return paths, np.asarray(labels, dtype=np.int64), names


def relabel(labels: np.ndarray, class_names: Sequence[str]):
    """Map the labels present to 0..k-1 in sorted order; returns (new labels, their class names)."""
    present = np.unique(labels)
    lookup = np.full(len(class_names), -1, dtype=np.int64)
    lookup[present] = np.arange(len(present))
    return lookup[labels], [class_names[i] for i in present]


def train_val_split(labels: np.ndarray, opt, groups: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Masks (train, validation) over a training split, per `--use_tv_split` / `--tv_split_by_samples`.

    By classes: the first floor(perc * C) classes (in label order) stay in training, the rest validate;
    with `groups` (a super-class per image, SOP) this is done within each group, so every super-class
    keeps the same share, as in the reference. By samples: per class, the first round(perc * n) images
    (at least one) stay, the rest validate; a class of one image stays in training.
    Either way both sides must be non-empty, else a UsageError names --tv_split_perc.
    """
    if opt.tv_split_by_samples:
        train = np.zeros(len(labels), dtype=bool)
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            train[idx[:max(1, int(round(opt.tv_split_perc * len(idx))))]] = True
    else:
        train = np.zeros(len(labels), dtype=bool)
        for g in ([None] if groups is None else np.unique(groups)):
            members = np.ones(len(labels), dtype=bool) if g is None else groups == g
            classes = np.unique(labels[members])
            train |= members & np.isin(labels, classes[:int(np.floor(opt.tv_split_perc * len(classes)))])
    if train.all() or not train.any():
        unit = "images per class" if opt.tv_split_by_samples else "classes"
        raise UsageError(
            f"--tv_split_perc {opt.tv_split_perc} leaves no {'validation' if train.all() else 'training'} data "
            f"({len(np.unique(labels))} classes, {len(labels)} images, split by {unit})"
        )
    return train, ~train
