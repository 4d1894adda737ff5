"""Retrieval grid: some test queries with their top-k neighbours, right ones framed green, wrong ones red.

One row per query: the query (framed blue), then its k nearest other test images by Euclidean distance
between embeddings (the ranking `e_recall@k` uses), each framed green when it has the query's class and red
otherwise. The queries are the same in every epoch (drawn once from --seed), so the grids of successive
epochs show how retrieval improves. Composed with PIL, no plotting library: a few milliseconds plus reading
the images. `compose` draws any such rows; search.py --grid draws its queries with it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

QUERY = (30, 90, 220)
RIGHT = (0, 170, 60)
WRONG = (220, 30, 30)
#: a neighbour whose class is unknown (search.py on an unlabelled index)
UNKNOWN = (150, 150, 150)
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class Layout:
    """Pixel geometry: panel (r, c) occupies [left(c), left(c) + panel) x [top(r), top(r) + panel)."""

    thumb: int = 72
    frame: int = 4
    gap: int = 6
    header: int = 34

    @property
    def panel(self) -> int:
        return self.thumb + 2 * self.frame

    def left(self, col: int) -> int:
        # the query column is followed by a double gap, separating it from the neighbours
        return self.gap + col * (self.panel + self.gap) + (self.gap if col > 0 else 0)

    def top(self, row: int) -> int:
        return self.header + row * (self.panel + self.gap)

    def size(self, rows: int, cols: int):
        return self.left(cols - 1) + self.panel + self.gap, self.top(rows - 1) + self.panel + self.gap


def pick_queries(n_items: int, n_queries: int, seed: int) -> np.ndarray:
    """`n_queries` distinct indices in [0, n_items), the same for the same seed."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_items, min(n_queries, n_items), replace=False))


def top_k(features: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """len(queries) x k indices of each query's nearest other items (squared Euclidean; ties by index)."""
    x = np.asarray(features, dtype=np.float64)
    q = x[queries]
    dist = (q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :]
    dist[np.arange(len(queries)), queries] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")
    return order[:, :min(k, len(x) - 1)]


def thumbnail(raw, size: int) -> Image.Image:
    """A dataset's raw item (PIL image, or C x H x W uint8 tensor) as a size x size RGB image, aspect kept."""
    if isinstance(raw, torch.Tensor):
        array = raw.numpy()
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
        raw = Image.fromarray(np.ascontiguousarray(array))
    return ImageOps.pad(raw.convert("RGB"), (size, size), color=BACKGROUND)


def draw(path: str, dataset, features: np.ndarray, labels: np.ndarray, queries: Sequence[int], k: int,
         title: str, layout: Layout = Layout()) -> np.ndarray:
    """Write the grid of `queries` to the PNG `path`; returns the neighbour indices drawn (queries x k)."""
    queries = np.asarray(queries)
    neighbours = top_k(features, queries, k)
    rows = [(dataset.load(int(query)), [(dataset.load(int(item)), RIGHT if labels[item] == labels[query] else WRONG)
                                        for item in neighbours[r]])
            for r, query in enumerate(queries)]
    compose(path, rows, title, layout)
    return neighbours


def compose(path: str, rows, title: str, layout: Layout = Layout()) -> None:
    """Write the PNG `path`: one row per (query image, [(neighbour image, frame colour), ...]); images are
    PIL images or C x H x W uint8 tensors, the query framed QUERY. Written atomically."""
    cols = 1 + max(len(neighbours) for _, neighbours in rows)
    canvas = Image.new("RGB", layout.size(len(rows), cols), BACKGROUND)
    pen = ImageDraw.Draw(canvas)
    pen.text((layout.gap, 4), title, fill=(0, 0, 0))
    pen.text((layout.left(0), layout.header - 13), "query", fill=QUERY)
    for c in range(1, cols):
        pen.text((layout.left(c), layout.header - 13), f"#{c}", fill=(0, 0, 0))
    for r, (query, neighbours) in enumerate(rows):
        for c, (raw, colour) in enumerate([(query, QUERY), *neighbours]):
            x, y = layout.left(c), layout.top(r)
            pen.rectangle([x, y, x + layout.panel - 1, y + layout.panel - 1], fill=colour)
            canvas.paste(thumbnail(raw, layout.thumb), (x + layout.frame, y + layout.frame))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp.png"
    canvas.save(tmp, format="PNG")
    os.replace(tmp, path)
