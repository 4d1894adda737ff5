"""An index folder, as `embed.py --out OUT` writes it and `search.py --index OUT` reads it:

* `embeddings.npy`: N x D float32, L2-normalised, row i is image i;
* `images.csv`: `path,label,class` per image: its absolute path, class id (0..C-1, classes sorted by name)
  and class name, both empty for an image without a class;
* `index.faiss`: a `faiss.IndexFlatL2` over the embeddings;
* `index.json`: the run folder and checkpoint that embedded them, the evaltype, the run's seed and metrics.

Search is exact. On unit vectors the squared Euclidean distance d^2 and the cosine similarity s rank alike,
s = 1 - d^2 / 2, and `IndexFlatL2` breaks distance ties by the smaller row, as the metrics' kNN does
(metrics/neighbours.py), so a search over the index returns the neighbours the metrics count.

Writing is atomic (inference/atomic.py): everything goes into a hidden temporary folder next to OUT, renamed
to OUT when complete (an older index at OUT is moved aside first and deleted last). An interrupt leaves OUT
as it was.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import Optional

import faiss
import numpy as np

from inference import atomic
from metrics.neighbours import remove_self
from utilities.errors import UsageError

FORMAT = 1
FILES = ("embeddings.npy", "images.csv", "index.faiss", "index.json")


@dataclass
class Index:
    """What an index folder holds; `labels[i]` is -1 for an image without a class."""

    embeddings: np.ndarray
    paths: list
    labels: np.ndarray
    class_names: list
    meta: dict
    faiss_index: Optional[faiss.Index] = None

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    def row_of(self) -> dict:
        return {path: row for row, path in enumerate(self.paths)}


def class_labels(classes) -> tuple:
    """Class names per image ('' for none) -> (labels, -1 for none; sorted distinct class names)."""
    names = sorted({c for c in classes if c})
    lookup = {name: i for i, name in enumerate(names)}
    return np.asarray([lookup.get(c, -1) for c in classes], dtype=np.int64), names


def _is_index(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "index.json"))


def check_out(out: str) -> None:
    """An existing --out must be an index folder (it is replaced); anything else is refused before any work."""
    if os.path.exists(out) and not _is_index(out):
        raise UsageError(f"--out {out}: exists and is not an index folder; choose a new folder name")


def write(out: str, embeddings: np.ndarray, paths, classes, meta: dict) -> None:
    """Write the index folder `out` atomically (see the module docstring)."""
    check_out(out)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    labels, names = class_labels(classes)
    with atomic.written_folder(out) as tmp:
        np.save(os.path.join(tmp, "embeddings.npy"), embeddings)
        with open(os.path.join(tmp, "images.csv"), "w", newline="", encoding="utf-8") as f:
            table = csv.writer(f)
            table.writerow(["path", "label", "class"])
            for path, label, cls in zip(paths, labels.tolist(), classes):
                table.writerow([path, label if label >= 0 else "", cls])
        flat = faiss.IndexFlatL2(embeddings.shape[1])
        flat.add(embeddings)
        faiss.write_index(flat, os.path.join(tmp, "index.faiss"))
        with open(os.path.join(tmp, "index.json"), "w") as f:
            json.dump({"format": FORMAT, "count": len(embeddings), "dim": embeddings.shape[1],
                       "classes": len(names), **meta}, f, indent=1)


def read(folder: str) -> Index:
    """Load an index folder written by `write`."""
    missing = [name for name in FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise UsageError(f"--index {folder}: not an index folder (missing {', '.join(missing)}); "
                         "make one with python embed.py --run RUN --images DIR --out FOLDER")
    with open(os.path.join(folder, "index.json")) as f:
        meta = json.load(f)
    with open(os.path.join(folder, "images.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    paths = [row["path"] for row in rows]
    labels, names = class_labels([row["class"] for row in rows])
    return Index(np.load(os.path.join(folder, "embeddings.npy")), paths, labels, names, meta,
                 faiss.read_index(os.path.join(folder, "index.faiss")))


def nearest(index: Index, queries: np.ndarray, k: int, self_rows: np.ndarray) -> tuple:
    """(similarities, rows), each len(queries) x k: each query's k nearest images, nearest first, leaving out
    its own row `self_rows[i]` (-1 for a query that is not in the index). Rows are -1 (similarity nan)
    where the index has fewer than k other images."""
    k_search = min(k + 1, index.faiss_index.ntotal)
    _, found = index.faiss_index.search(np.ascontiguousarray(queries, dtype=np.float32), k_search)
    rows = remove_self(found, k_search - 1, self_rows)
    if rows.shape[1] < k:
        rows = np.concatenate([rows, -np.ones((len(rows), k - rows.shape[1]), dtype=rows.dtype)], axis=1)
    gallery = index.embeddings[np.maximum(rows, 0)]
    similarities = np.einsum("qkd,qd->qk", gallery.astype(np.float64), np.asarray(queries, dtype=np.float64))
    return np.where(rows >= 0, similarities, np.nan), rows
