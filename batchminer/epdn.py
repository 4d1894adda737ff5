"""Easy-positive, distance-weighted-negative triplets (Xuan et al. 2020 positives, Wu et al. 2017 negatives)."""
from __future__ import annotations

import torch

from batchminer import REGISTRY
from batchminer.base import nearest
from batchminer.distance import DistanceMiner


@REGISTRY.register("epdn")
class EPDNMiner(DistanceMiner):
    """Per anchor with a positive and a negative: the nearest same-class sample as positive, and a negative
    drawn by distance-weighted sampling exactly as the `distance` miner does (on L2-normalised embeddings,
    --miner_distance_lower_cutoff / --miner_distance_upper_cutoff).

    The reference took the positive from the boolean mask (always sample 1).
    """

    def choose_positives(self, dist: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return nearest(dist, pos)
