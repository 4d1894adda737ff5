"""`glyphs`: the embedded dataset of real font glyphs (datasets/glyphs_data/, built by tools/build_glyphs.py).

A class is one character, an instance is that character in one openly licensed font family; homoglyphs
across scripts are merged or dropped. Images are grayscale 32x32, white ink on black, served as 3-channel
tensors. Split like CUB: the first half of the class ids trains, the rest is the test set.
"""
from __future__ import annotations

import os

import numpy as np

from datasets import REGISTRY
from datasets.layout import Layout

DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "glyphs_data", "glyphs.npz")


def load_arrays(path: str = DATA_FILE) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@REGISTRY.register("glyphs")
def glyphs(root, opt):
    """Images N x H x W uint8; the first half of the class ids trains. `root` is unused."""
    arrays = load_arrays()
    names = [f"{c} ({cp})" for c, cp in zip(arrays["class_names"].tolist(), arrays["class_codepoints"].tolist())]
    return Layout.first_classes(arrays["images"], arrays["labels"].astype(np.int64), names, len(names) // 2)
