"""CUB200-2011 (Wah et al. 2011): `<source>/cub200/images/<NNN.Class_Name>/<files>`.

Classes are ordered by their number NNN; the first half (001-100 for the full set) trains, the second
half (101-200) is the test set, as in the reference and the DML literature.
"""
from __future__ import annotations

import os
import re

from datasets import REGISTRY
from datasets.base import class_folders_to_samples
from datasets.layout import Layout
from utilities.errors import UsageError

CLASS_FOLDER = re.compile(r"^(\d+)\.(.+)$")


@REGISTRY.register("cub200")
def cub200(root: str, opt):
    """The class folders ordered by NNN; the first half trains."""
    images = os.path.join(root, "images")
    if not os.path.isdir(images):
        raise UsageError(f"--source_path: CUB200 layout expects {images}/<NNN.Class_Name>/<images>; folder not found")
    entries = []
    for name in os.listdir(images):
        match = CLASS_FOLDER.match(name)
        if match and os.path.isdir(os.path.join(images, name)):
            entries.append((int(match.group(1)), name))
    if not entries:
        raise UsageError(f"--source_path: no class folders named NNN.Class_Name in {images}")
    entries.sort()
    paths, labels, names = class_folders_to_samples([(name, os.path.join(images, name)) for _, name in entries])
    return Layout.first_classes(paths, labels, names, len(names) // 2)
