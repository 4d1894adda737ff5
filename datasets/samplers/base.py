"""What every batch sampler shares: the class index of the training labels, the seeded generator, the number
of batches per epoch, resumable state, and vectorised draws of distinct class members."""
from __future__ import annotations

from typing import Iterator, List, Tuple

import numpy as np

from utilities.errors import UsageError
from utilities.flags import Flag


class BatchSampler:
    """Base of the `--data_sampler` samplers: a batch sampler for a DataLoader (`batch_sampler=`), yielding
    lists of dataset indices, floor(N / bs) batches per epoch (an epoch is a number of steps, not a pass over
    the data, as in the reference).

    `labels`: the training label of every dataset index; `batch_size` (--bs) and `samples_per_class`
    (--samples_per_class); `seed` seeds the sampler's own numpy PCG64 generator, whose state `state_dict()`
    returns, so a resumed run draws the same batches. `FLAGS` are the sampler's command-line flags
    (utilities/flags.py); `storage` is the EmbeddingStorage a storage-based sampler reads (None otherwise).

    Classes are indexed once: `members(c)` are the indices of class c in ascending order, `class_sizes[c]`
    their number, `rank_in_class[i]` the position of index i among its class's members.
    """

    FLAGS: Tuple[Flag, ...] = ()
    name = "sampler"
    storage = None

    def __init__(self, labels, batch_size: int, samples_per_class: int, seed: int = 0):
        labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.classes_per_batch = batch_size // samples_per_class
        self.n_batches = len(labels) // batch_size
        self.rng = np.random.default_rng(seed)
        if self.n_batches == 0:
            raise UsageError(f"--bs {batch_size} is larger than the training split ({len(labels)} images)")
        self.labels = labels
        self.classes, class_of = np.unique(labels, return_inverse=True)
        self.order = np.argsort(class_of, kind="stable")
        self.class_sizes = np.bincount(class_of, minlength=len(self.classes))
        self.class_starts = np.concatenate([[0], np.cumsum(self.class_sizes)[:-1]])
        self.class_of = class_of  # position of each index's class in `classes`
        self.rank_in_class = np.empty(len(labels), dtype=np.int64)
        self.rank_in_class[self.order] = np.arange(len(labels)) - np.repeat(self.class_starts, self.class_sizes)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[List[int]]:
        raise NotImplementedError

    def members(self, c: int) -> np.ndarray:
        """Indices of the class at position `c` of `classes`, ascending."""
        start = self.class_starts[c]
        return self.order[start:start + self.class_sizes[c]]

    def require_classes_per_batch(self) -> None:
        """Refuse batches that need more distinct classes than the split has."""
        if self.classes_per_batch > len(self.classes):
            raise UsageError(
                f"--bs {self.batch_size} / --samples_per_class {self.samples_per_class} needs {self.classes_per_batch} "
                f"classes per batch, but the training split has {len(self.classes)}"
            )

    def distinct_ranks(self, sizes: np.ndarray, k: int) -> np.ndarray:
        """(R, k) positions in [0, sizes[r]) per row r: a uniformly random ordered sample without replacement
        for the first min(k, sizes[r]) columns (sequential selection: draw among the positions not taken yet,
        then step past the taken ones in ascending order), uniform with replacement after that."""
        sizes = np.asarray(sizes, dtype=np.int64)
        out = np.zeros((len(sizes), k), dtype=np.int64)
        for t in range(k):
            fresh = sizes > t
            x = np.floor(self.rng.random(len(sizes)) * np.where(fresh, sizes - t, sizes)).astype(np.int64)
            taken = np.sort(out[:, :t], axis=1)
            for j in range(t):
                x += fresh & (x >= taken[:, j])
            out[:, t] = x
        return out

    def class_mates(self, points: np.ndarray, k: int) -> np.ndarray:
        """(n, k) other images of the class of each of `points`: distinct and different from the point where
        the class has more than k images, then repeats of the others; the point itself for a one-image class."""
        points = np.asarray(points, dtype=np.int64)
        c = self.class_of[points]
        others = self.class_sizes[c] - 1
        ranks = self.distinct_ranks(others, k)
        ranks += ranks >= self.rank_in_class[points][:, None]  # skip the point itself
        ranks = np.minimum(ranks, self.class_sizes[c][:, None] - 1)  # (one-image classes: replaced below)
        mates = self.order[self.class_starts[c][:, None] + ranks]
        return np.where(others[:, None] > 0, mates, points[:, None])

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
