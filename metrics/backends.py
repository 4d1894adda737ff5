"""Where the shared work of an evaluation runs: `faiss` (CPU, the default) or `torch` (any torch device;
`--evaluate_on_gpu` uses it on the GPU, so no faiss-gpu build is needed).

A backend is a neighbour search and a k-means with the contracts of `metrics.neighbours` and
`metrics.clustering`; both backends rank neighbours identically (distance, then index).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from metrics.clustering import faiss_kmeans, torch_kmeans
from metrics.neighbours import faiss_neighbours, torch_neighbours
from utilities.registry import Registry


@dataclass(frozen=True)
class Backend:
    neighbours: Callable
    kmeans: Callable


BACKENDS: Registry = Registry("metric backend", "backend")
BACKENDS.register("faiss")(Backend(neighbours=faiss_neighbours, kmeans=faiss_kmeans))
BACKENDS.register("torch")(Backend(neighbours=torch_neighbours, kmeans=torch_kmeans))
