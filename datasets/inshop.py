"""In-Shop Clothes Retrieval (DeepFashion, Liu et al. 2016): `<source>/inshop/Eval/list_eval_partition.txt`
and the images it names, relative to `<source>/inshop/` (`img/WOMEN/...`) or to `<source>/inshop/Img/`.

The partition file: the number of images, the header `image_name item_id evaluation_status`, then one
line per image with status `train`, `query` or `gallery`. A class is an item id. Training uses the
`train` images (3,997 items, 25,882 images); evaluation searches each `query` image (14,218) among the
`gallery` images (12,612) of the 3,985 test items. The reference read the file with the header as row 1
and then dropped the first data row, losing one image (REFERENCE.md §6.36); every line is read here and
the count on line 1 is checked.
"""
from __future__ import annotations

import os

from datasets import REGISTRY
from datasets.base import check_listed_files
from datasets.layout import Layout, Part
from utilities.errors import UsageError

HEADER = ["image_name", "item_id", "evaluation_status"]
STATUSES = ("train", "query", "gallery")


def read_partition(path: str):
    """[(image name, item id, status)]; a bad line or a wrong count is a one-line error naming the file."""
    if not os.path.isfile(path):
        raise UsageError(f"--source_path: In-Shop layout expects {path}; file not found")
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].strip().isdigit() or lines[1].split() != HEADER:
        raise UsageError(f"{path}: expected the image count on line 1 and the header '{' '.join(HEADER)}' on line 2")
    rows = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if len(fields) != 3 or fields[2] not in STATUSES:
            raise UsageError(f"{path}:{number}: expected '<image_name> <item_id> train|query|gallery', got '{line.strip()}'")
        rows.append(tuple(fields))
    if int(lines[0]) != len(rows):
        raise UsageError(f"{path}: line 1 announces {int(lines[0])} images but {len(rows)} are listed")
    return rows


@REGISTRY.register("inshop")
def inshop(root: str, opt) -> Layout:
    """Training images, and the query and gallery images of the test items."""
    listing = os.path.join(root, "Eval", "list_eval_partition.txt")
    rows = read_partition(listing)
    base = next((b for b in (root, os.path.join(root, "Img")) if os.path.isfile(os.path.join(b, rows[0][0]))), root)
    items = sorted({item for _, item, _ in rows})
    index = {item: i for i, item in enumerate(items)}
    parts = {}
    for status in STATUSES:
        selected = [(name, item) for name, item, s in rows if s == status]
        if not selected:
            raise UsageError(f"{listing}: no image has status '{status}'")
        paths = [os.path.join(base, name) for name, _ in selected]
        keep = check_listed_files(paths, listing)
        parts[status] = Part(paths, [index[item] for _, item in selected]).subset(keep)
    return Layout(items, training=parts["train"], query=parts["query"], gallery=parts["gallery"])
