"""`icons`: the embedded dataset of freedesktop standard icons (datasets/icons_data/, built by tools/build_icons.py).

A class is one standard icon name of the freedesktop.org Icon Naming Specification (`edit-copy`, `folder`,
`media-seek-forward`, ...), an instance is that icon as drawn by one openly licensed icon theme (Tango, Oxygen,
Breeze, Papirus, ...); themes that redraw another and classes that most themes draw alike are left out. Images
are RGB 32x32, the icon over white. Split like CUB: the first half of the class ids trains, the rest is the test
set.
"""
from __future__ import annotations

import os

import numpy as np

from datasets import REGISTRY
from datasets.glyphs import load_arrays
from datasets.layout import Layout

DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "icons_data", "icons.npz")


@REGISTRY.register("icons")
def icons(root, opt):
    """Images N x H x W x 3 uint8; the first half of the class ids trains. `root` is unused."""
    arrays = load_arrays(DATA_FILE)
    names = arrays["class_names"].tolist()
    return Layout.first_classes(arrays["images"], arrays["labels"].astype(np.int64), names, len(names) // 2)
