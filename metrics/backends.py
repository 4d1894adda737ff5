"""Where the shared work of an evaluation runs: `faiss` (CPU, the default on a CPU run), `torch` (any torch
device; a CUDA run uses it on the GPU, so no faiss-gpu build is needed) or `faiss_gpu` (torch's kNN with
faiss-gpu's k-means, used on CUDA when a faiss-gpu build is installed). The torch-based backends take the
embeddings as tensors where they are, and import no faiss unless they use it.

A backend is a neighbour search and a k-means with the contracts of `metrics.neighbours` and
`metrics.clustering`; both backends rank neighbours identically (distance, then index).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from metrics.clustering import faiss_gpu_kmeans, faiss_kmeans, torch_kmeans
from metrics.neighbours import faiss_neighbours, torch_neighbours
from utilities.registry import Registry


@dataclass(frozen=True)
class Backend:
    neighbours: Callable
    kmeans: Callable


BACKENDS: Registry = Registry("metric backend", "backend")
BACKENDS.register("faiss")(Backend(neighbours=faiss_neighbours, kmeans=faiss_kmeans))
BACKENDS.register("torch")(Backend(neighbours=torch_neighbours, kmeans=torch_kmeans))
# Exact kNN is a matmul, as fast in torch as in faiss on a GPU; faiss-gpu's k-means is the well-tested one.
BACKENDS.register("faiss_gpu")(Backend(neighbours=torch_neighbours, kmeans=faiss_gpu_kmeans))


def faiss_gpus() -> int:
    """GPUs faiss can use: 0 without faiss or with a CPU-only build."""
    try:
        import faiss
    except ImportError:
        return 0
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
