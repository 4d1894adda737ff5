"""CARS196 (Krause et al. 2013): `<source>/cars196/images/<class folder>/<images>`.

Classes are the class folders sorted by name; the first half (98 of 196) trains, the second half is the
test set, as in the reference. That is the standard split (classes 1-98 / 99-196) when the folder names
sort in the official class order, as in the archive the reference was used with. Hidden files and folders
(`.DS_Store`, macOS `._name` forks) are skipped; the reference read them as images (REFERENCE.md §6.36).
"""
from __future__ import annotations

import os

from datasets import REGISTRY
from datasets.base import class_folders_to_samples, sorted_class_folders
from datasets.layout import Layout
from utilities.errors import UsageError


@REGISTRY.register("cars196")
def cars196(root: str, opt) -> Layout:
    """The class folders sorted by name; the first half trains."""
    images = os.path.join(root, "images")
    if not os.path.isdir(images):
        raise UsageError(f"--source_path: CARS196 layout expects {images}/<class folder>/<images>; folder not found")
    folders = sorted_class_folders(images)
    if len(folders) < 2:
        raise UsageError(f"--source_path: CARS196 needs at least 2 class folders in {images}, found {len(folders)}")
    paths, labels, names = class_folders_to_samples(folders)
    return Layout.first_classes(paths, labels, names, len(names) // 2)
