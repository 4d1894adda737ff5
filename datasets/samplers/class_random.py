"""class_random: bs / spc classes per batch, spc images of each (the reference's default sampler)."""
from __future__ import annotations

from typing import Iterator, List

import numpy as np

from datasets.samplers import SAMPLERS
from datasets.samplers.base import BatchSampler
from utilities.flags import reads


@SAMPLERS.register("class_random")
class ClassRandomSampler(BatchSampler):
    """Each batch holds bs / spc distinct classes drawn uniformly, and spc images of each: distinct images
    where the class has at least spc, otherwise all of its images plus repeats drawn at random.

    The reference drew classes and images with replacement, so a batch could hold the same image twice or
    fewer classes than bs / spc; `replacement=True` (--reference_parity) draws so: each of the bs / spc
    classes uniformly with replacement, each of its spc images uniformly with replacement.
    """

    FLAGS = (reads("reference_parity", "replacement"),)

    def __init__(self, labels, batch_size: int, samples_per_class: int, seed: int = 0, replacement: bool = False):
        super().__init__(labels, batch_size, samples_per_class, seed)
        self.replacement = replacement
        if not replacement:
            self.require_classes_per_batch()

    def _images_of(self, c: int) -> np.ndarray:
        members = self.members(c)
        spc = self.samples_per_class
        if len(members) >= spc:
            return self.rng.choice(members, spc, replace=False)
        extra = self.rng.choice(members, spc - len(members), replace=True)
        return np.concatenate([self.rng.permutation(members), extra])

    def _batch_with_replacement(self) -> np.ndarray:
        classes = self.rng.integers(len(self.classes), size=self.classes_per_batch)
        ranks = self.rng.integers(0, self.class_sizes[classes][:, None], size=(len(classes), self.samples_per_class))
        return self.order[self.class_starts[classes][:, None] + ranks].ravel()

    def __iter__(self) -> Iterator[List[int]]:
        for _ in range(self.n_batches):
            if self.replacement:
                yield self._batch_with_replacement().tolist()
            else:
                classes = self.rng.choice(len(self.classes), self.classes_per_batch, replace=False)
                yield np.concatenate([self._images_of(c) for c in classes]).tolist()
