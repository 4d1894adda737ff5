"""Stanford Online Products (Oh Song et al. 2016): `<source>/online_products/Info_Files/Ebay_{train,test}.txt`
and the images under `<source>/online_products/images/<path>`.

Each info file has a header `image_id class_id super_class_id path` and one image per line. The files
give the split: 11,318 training classes (59,551 images) and 11,316 test classes (60,502 images). The
super-class of each training image is kept, so that the class-wise --use_tv_split takes the same share of
classes from every super-class, as in the reference (whose labels then started at -1, REFERENCE.md §6.36;
here every split is relabelled 0..C-1).
"""
from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np

from datasets import REGISTRY
from datasets.base import check_listed_files
from datasets.layout import Layout, Part
from utilities.errors import UsageError

HEADER = ["image_id", "class_id", "super_class_id", "path"]


def read_info_file(path: str) -> List[Tuple[int, int, str]]:
    """[(class_id, super_class_id, relative image path)] of one Ebay_*.txt; a bad line is a one-line error."""
    if not os.path.isfile(path):
        raise UsageError(f"--source_path: Stanford Online Products layout expects {path}; file not found")
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines or lines[0].split() != HEADER:
        raise UsageError(f"{path}:1: expected the header '{' '.join(HEADER)}'")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        try:
            _, class_id, super_id = (int(x) for x in fields[:3])
            if len(fields) != 4:
                raise ValueError
        except ValueError:
            raise UsageError(f"{path}:{number}: expected '{' '.join(HEADER)}', got '{line.strip()}'") from None
        rows.append((class_id, super_id, fields[3]))
    if not rows:
        raise UsageError(f"{path}: lists no image")
    return rows


@REGISTRY.register("online_products")
def online_products(root: str, opt) -> Layout:
    """Training and test images as the info files list them; classes named by their class_id."""
    info = os.path.join(root, "Info_Files")
    listed = {part: read_info_file(os.path.join(info, f"Ebay_{part}.txt")) for part in ("train", "test")}
    class_ids = sorted({c for rows in listed.values() for c, _, _ in rows})
    index = {c: i for i, c in enumerate(class_ids)}
    parts = {}
    for part, rows in listed.items():
        paths = [os.path.join(root, "images", rel) for _, _, rel in rows]
        keep = np.asarray(check_listed_files(paths, os.path.join(info, f"Ebay_{part}.txt")))
        labels = np.asarray([index[c] for c, _, _ in rows])
        groups = np.asarray([s for _, s, _ in rows])
        parts[part] = Part(paths, labels, groups).subset(keep)
    shared = set(parts["train"].labels.tolist()) & set(parts["test"].labels.tolist())
    if shared:
        raise UsageError(f"{info}: class_id {class_ids[min(shared)]} is listed in both Ebay_train.txt and Ebay_test.txt")
    return Layout([str(c) for c in class_ids], training=parts["train"], testing=parts["test"])
