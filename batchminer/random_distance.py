"""Distance-weighted sampling on randomly permuted labels (the reference's `random_distance`)."""
from __future__ import annotations

import torch

from batchminer import REGISTRY
from batchminer.distance import DistanceMiner


@REGISTRY.register("random_distance")
class RandomDistanceMiner(DistanceMiner):
    """The `distance` miner applied to a random permutation of the batch's labels: a random-label task
    whose "classes" keep the batch's class sizes but not its semantics (a regulariser / control experiment).
    Triplets are valid with respect to the permuted labels, not the true ones.
    """

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        permuted = labels[torch.randperm(len(labels), device=labels.device)]
        return super().__call__(batch, permuted)
