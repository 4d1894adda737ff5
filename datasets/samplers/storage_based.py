"""The base of the samplers that choose batches by the stored embeddings of the training images
(datasets/embedding_storage.py): greedy_coreset, d2_coreset, disthist_batchmatch, fid_batchmatch.

At the start of each epoch (when the DataLoader asks for the epoch's first batch) all floor(N / bs) batches
of the epoch are chosen from the storage as it is then, as the reference did; the training steps of the
epoch update the storage for the next one. Random draws come from the sampler's numpy generator (so the
batches depend on --seed, not on the device), the geometry runs vectorised on the storage's device, a chunk
of pools at a time, and the chosen batches come back to the host once per epoch.
"""
from __future__ import annotations

import math
from typing import Iterator, List

import numpy as np
import torch

from datasets.embedding_storage import EmbeddingStorage
from datasets.samplers.base import BatchSampler
from utilities.errors import UsageError
from utilities.flags import Bounded, flag

POOL_SIZE = flag("--data_batchmatch_bigbs", param="pool_size", default=512, type=Bounded(int, ge=1),
                 help="Storage samplers: number of stored embeddings (the pool) each batch is chosen from.")
PROJECTION = flag("--data_sampler_lowproj_dim", param="projection_dim", default=-1, type=Bounded(int, ge=1, also=(-1,)),
                  help="Storage samplers: if > 0, compare the pool after a fresh random linear map to this many "
                       "dimensions (one map per pool).")
#: Elements of the largest per-chunk tensor; bounds the memory of an epoch's computation (~256 MB in fp32).
CHUNK_ELEMENTS = 2**26


def batched_squared_distances(x: torch.Tensor) -> torch.Tensor:
    """(P, M, M) squared Euclidean distances within each of P pools of M points (P, M, D), clamped at 0."""
    sq = (x * x).sum(-1)
    return (sq[:, :, None] + sq[:, None, :] - 2.0 * x @ x.transpose(1, 2)).clamp_min(0.0)


class StorageSampler(BatchSampler):
    """A sampler reading `storage` (an EmbeddingStorage over the same dataset indices as `labels`).

    `pool_size` (--data_batchmatch_bigbs) stored embeddings form the pool of each batch; `projection_dim`
    (--data_sampler_lowproj_dim) > 0 maps each pool through its own random linear map D -> projection_dim
    (entries U(-1/sqrt(D), 1/sqrt(D)), torch.nn.Linear's initialisation, as the reference) before any
    distance is taken. Subclasses draw the pools (`draw_pools`) and choose each batch's positions in its
    pool (`choose`); `per_pool_elements` sizes the chunks.
    """

    FLAGS = (POOL_SIZE, PROJECTION)

    def __init__(self, labels, batch_size: int, samples_per_class: int, storage: EmbeddingStorage, seed: int = 0,
                 pool_size: int = 512, projection_dim: int = -1):
        super().__init__(labels, batch_size, samples_per_class, seed)
        if storage is None or len(storage.embeddings) != len(self.labels):
            raise ValueError(f"{type(self).__name__}: needs an EmbeddingStorage with one row per dataset index")
        if projection_dim == 0 or projection_dim < -1:
            raise UsageError(f"--data_sampler_lowproj_dim {projection_dim}: give a positive dimension, or -1 for none")
        self.storage = storage
        self.pool_size = pool_size
        self.projection_dim = projection_dim

    def draw_pools(self, n: int) -> np.ndarray:
        """(n, M) dataset indices: the pool of each of n batches."""
        raise NotImplementedError

    def choose(self, x: torch.Tensor, pools: np.ndarray) -> np.ndarray:
        """(P, bs) dataset indices: the batch chosen from each of the P pools (`pools`, with embeddings `x`,
        P x M x D)."""
        raise NotImplementedError

    def per_pool_elements(self) -> int:
        return self.pool_size * self.pool_size

    def project(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection_dim < 0:
            return x
        dim = x.shape[-1]
        bound = 1.0 / math.sqrt(dim)
        maps = self.rng.uniform(-bound, bound, size=(len(x), dim, self.projection_dim))
        return x @ torch.from_numpy(maps).to(x.device, x.dtype)

    def epoch_batches(self) -> np.ndarray:
        """(n_batches, bs) dataset indices: the batches of one epoch, chosen from the storage as it is now."""
        if not self.storage.filled:
            raise RuntimeError(f"{type(self).__name__}: the embedding storage is empty; fill it first "
                               "(EmbeddingStorage.fill with the embeddings of the training set)")
        chunk = max(1, CHUNK_ELEMENTS // self.per_pool_elements())
        batches = []
        for start in range(0, self.n_batches, chunk):
            pools = self.draw_pools(min(chunk, self.n_batches - start))
            x = self.project(self.storage.embeddings[torch.from_numpy(pools).to(self.storage.device)])
            batches.append(self.choose(x, pools))
        return np.concatenate(batches)

    def __iter__(self) -> Iterator[List[int]]:
        for batch in self.epoch_batches():
            yield batch.tolist()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "storage": self.storage.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.storage.load_state_dict(state["storage"])

    def uniform_noise(self, shape, device) -> torch.Tensor:
        """U(0, 1) noise from the sampler's generator, on `device`."""
        return torch.from_numpy(self.rng.random(shape)).to(device, torch.float32)
