"""Miniature dataset trees in the real layouts: tiny generated images, the real info-file formats."""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

_rng = np.random.default_rng(0)


def write_image(path: str, size=(12, 10)) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(_rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def write_class_tree(images: str, class_names: List[str], per_class: int) -> Dict[str, List[str]]:
    """`<images>/<class>/img_i.jpg` for each class; returns {class: [paths]}."""
    return {name: [write_image(os.path.join(images, name, f"img_{i}.jpg")) for i in range(per_class)]
            for name in class_names}


def write_sop_tree(root: str, train: List[Tuple[int, int, int]], test: List[Tuple[int, int, int]]) -> Dict[str, list]:
    """`<root>/online_products/{Info_Files/Ebay_*.txt, images/...}`; `train`/`test` list
    (class_id, super_class_id, n_images). Returns {"train"/"test": [(path, class_id, super_class_id)]}."""
    base = os.path.join(root, "online_products")
    os.makedirs(os.path.join(base, "Info_Files"), exist_ok=True)
    written, image_id = {}, 1
    for part, classes in (("train", train), ("test", test)):
        lines, rows = ["image_id class_id super_class_id path"], []
        for class_id, super_id, n in classes:
            for i in range(n):
                rel = f"super{super_id}_final/{class_id}_{i}.JPG"
                rows.append((write_image(os.path.join(base, "images", rel)), class_id, super_id))
                lines.append(f"{image_id} {class_id} {super_id} {rel}")
                image_id += 1
        with open(os.path.join(base, "Info_Files", f"Ebay_{part}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        written[part] = rows
    return written


def write_inshop_tree(root: str, rows: List[Tuple[str, str, str]], image_base: str = "") -> List[str]:
    """`<root>/inshop/Eval/list_eval_partition.txt` in DeepFashion's format (count, header, padded columns)
    for rows (image_name, item_id, status), images under `<root>/inshop/<image_base>`. Returns the image paths."""
    base = os.path.join(root, "inshop")
    paths = [write_image(os.path.join(base, image_base, name)) for name, _, _ in rows]
    os.makedirs(os.path.join(base, "Eval"), exist_ok=True)
    with open(os.path.join(base, "Eval", "list_eval_partition.txt"), "w") as f:
        f.write(f"{len(rows)}\nimage_name item_id evaluation_status\n")
        for name, item, status in rows:
            f.write(f"{name:<60}{item:<20}{status}\n")
    return paths


def inshop_rows(n_train_items: int, n_test_items: int, per_item: int = 3) -> List[Tuple[str, str, str]]:
    """Training items with `per_item` train images; test items with one query and per_item - 1 gallery images."""
    rows = []
    for k in range(n_train_items + n_test_items):
        item = f"id_{k + 1:08d}"
        for i in range(per_item):
            status = "train" if k < n_train_items else ("query" if i == 0 else "gallery")
            rows.append((f"img/WOMEN/Dresses/{item}/{i:02d}_1_front.jpg", item, status))
    return rows
