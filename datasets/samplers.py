"""Batch samplers: each yields lists of dataset indices; an epoch is floor(N / bs) batches."""
from __future__ import annotations

from typing import Dict, Iterator, List

import numpy as np

from utilities import distributed
from utilities.errors import UsageError
from utilities.registry import Registry

SAMPLERS: Registry = Registry("batch sampler", "--data_sampler")


@SAMPLERS.register("class_random")
class ClassRandomSampler:
    """Each batch holds bs / spc distinct classes drawn uniformly, and spc images of each: distinct images
    where the class has at least spc, otherwise all of its images plus repeats drawn at random.

    The reference drew classes and images with replacement, so a batch could hold the same image twice or
    fewer classes than bs / spc. The generator is a numpy PCG64 seeded by --seed; `state_dict()` makes it
    resumable.
    """

    def __init__(self, image_dict: Dict[int, List[int]], n_samples: int, batch_size: int, samples_per_class: int,
                 seed: int):
        self.image_dict = {c: np.asarray(v) for c, v in image_dict.items()}
        self.classes = np.asarray(sorted(self.image_dict))
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.classes_per_batch = batch_size // samples_per_class
        self.n_batches = n_samples // batch_size
        self.rng = np.random.default_rng(seed)
        if self.classes_per_batch > len(self.classes):
            raise UsageError(
                f"--bs {batch_size} / --samples_per_class {samples_per_class} needs {self.classes_per_batch} classes "
                f"per batch, but the training split has {len(self.classes)}"
            )
        if self.n_batches == 0:
            raise UsageError(f"--bs {batch_size} is larger than the training split ({n_samples} images)")

    def __len__(self) -> int:
        return self.n_batches

    def _images_of(self, label: int) -> np.ndarray:
        members = self.image_dict[label]
        spc = self.samples_per_class
        if len(members) >= spc:
            return self.rng.choice(members, spc, replace=False)
        extra = self.rng.choice(members, spc - len(members), replace=True)
        return np.concatenate([self.rng.permutation(members), extra])

    def __iter__(self) -> Iterator[List[int]]:
        for _ in range(self.n_batches):
            classes = self.rng.choice(self.classes, self.classes_per_batch, replace=False)
            yield np.concatenate([self._images_of(c) for c in classes]).tolist()

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def select(name: str, dataset, opt):
    """Build the `--data_sampler` batch sampler over a training `DMLDataset`; under several processes
    (torchrun) this process's share of each global batch (utilities.distributed.RankShare)."""
    sampler = SAMPLERS.lookup(name)(dataset.image_dict, len(dataset), opt.bs, opt.samples_per_class, opt.seed)
    processes = distributed.current()
    if processes.several:
        distributed.check_batch_share(opt.bs, opt.samples_per_class, processes.world_size)
        return distributed.RankShare(sampler, processes.rank, processes.world_size)
    return sampler
