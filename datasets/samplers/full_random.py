"""full_random: class-balanced random batches with a guaranteed positive pair (the reference's `random_sampler`)."""
from __future__ import annotations

from typing import Iterator, List

import numpy as np

from datasets.samplers import SAMPLERS
from datasets.samplers.base import BatchSampler
from utilities.errors import UsageError
from utilities.flags import reads


@SAMPLERS.register("full_random")
class FullRandomSampler(BatchSampler):
    """Each batch: bs - 1 draws of a class uniformly (with replacement, so every class is equally likely
    whatever its size: class-balanced, not image-uniform) and an image of it uniformly; then a partner: another
    image of the class of a uniformly chosen earlier draw, so the batch holds at least one positive pair.

    Images within a batch are distinct where the class has enough: the draws of one class take distinct
    images, and the partner is an image of its class not yet in the batch (else any other image of it than
    the chosen draw); the draw whose class gets the partner is chosen among classes of two images or more.
    `samples_per_class` plays no part (the batch is not class-structured).

    `replacement=True` (--reference_parity) draws as the reference did: every image with replacement, the
    partner any image of the chosen draw's class, that draw itself included.
    """

    FLAGS = (reads("reference_parity", "replacement"),)

    def __init__(self, labels, batch_size: int, samples_per_class: int, seed: int = 0, replacement: bool = False):
        super().__init__(labels, batch_size, samples_per_class, seed)
        self.replacement = replacement
        if batch_size < 2:
            raise UsageError(f"--bs {batch_size}: full_random needs at least 2 images per batch (one positive pair)")
        if not replacement and self.class_sizes.max() < 2:
            raise UsageError("full_random needs a class with at least 2 images for its positive pair; every "
                             "training class has 1")

    def _batch(self) -> np.ndarray:
        classes = self.rng.integers(len(self.classes), size=self.batch_size - 1)
        if self.replacement:
            ranks = self.rng.integers(0, self.class_sizes[classes])
            draws = self.order[self.class_starts[classes] + ranks]
            chosen = self.rng.integers(len(draws))
            c = classes[chosen]
            partner = self.order[self.class_starts[c] + self.rng.integers(self.class_sizes[c])]
            return np.append(draws, partner)
        used, occurrence, counts = np.unique(classes, return_inverse=True, return_counts=True)
        # the j-th draw of a class takes the j-th of its distinct ranks; one more rank is kept for the partner
        ranks = self.distinct_ranks(self.class_sizes[used], int(counts.max()) + 1)
        nth = np.empty(len(classes), dtype=np.int64)
        by_class = np.argsort(occurrence, kind="stable")
        nth[by_class] = np.arange(len(classes)) - np.repeat(np.cumsum(counts) - counts, counts)
        draws = self.order[self.class_starts[classes] + ranks[occurrence, nth]]
        eligible = np.flatnonzero(self.class_sizes[classes] >= 2)
        if len(eligible) == 0:  # every draw hit a one-image class: pair a random class of two or more instead
            return np.append(draws[:-1], self.pair_from(self.rng.choice(np.flatnonzero(self.class_sizes >= 2))))
        chosen = self.rng.choice(eligible)
        u, size = occurrence[chosen], self.class_sizes[classes[chosen]]
        if counts[u] < size:
            rank = ranks[u, counts[u]]  # an image of the class not in the batch yet
        else:
            rank = (self.rank_in_class[draws[chosen]] + 1 + self.rng.integers(size - 1)) % size
        return np.append(draws, self.order[self.class_starts[classes[chosen]] + rank])

    def pair_from(self, c: int) -> np.ndarray:
        """Two distinct random images of the class at position `c`."""
        return self.order[self.class_starts[c] + self.distinct_ranks(self.class_sizes[[c]], 2)[0]]

    def __iter__(self) -> Iterator[List[int]]:
        for _ in range(self.n_batches):
            yield self._batch().tolist()
