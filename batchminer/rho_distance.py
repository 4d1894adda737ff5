"""rho-regularised distance miner (Roth et al., "Revisiting Training Strategies ... in DML", ICML 2020)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from batchminer import REGISTRY
from batchminer.base import BatchMiner, as_triplets, pairwise, uniform_choice
from batchminer.distance import sample_distance_weighted_negatives


@REGISTRY.register("rho_distance")
class RhoDistanceMiner(BatchMiner):
    """Distance-weighted triplets where, with probability cp (--miner_rho_distance_cp), an anchor's triplet is
    replaced by (a, a, p'): a same-class sample p' in the negative slot, pushed away to densify the embedding
    space (rho regularisation). Only anchors with a positive (and a negative) take part.
    """

    name = "rho_distance"

    def __init__(self, opt):
        super().__init__(opt)
        self.lower_cutoff = opt.miner_rho_distance_lower_cutoff
        self.upper_cutoff = opt.miner_rho_distance_upper_cutoff
        self.push_probability = opt.miner_rho_distance_cp

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist, pos, neg = pairwise(F.normalize(batch.detach(), dim=-1), labels)
        valid = pos.any(1) & neg.any(1)
        anchors = torch.arange(len(labels), device=batch.device)
        positives = uniform_choice(pos)
        negatives = sample_distance_weighted_negatives(dist, neg, batch.shape[1], self.lower_cutoff, self.upper_cutoff)
        push = torch.rand(len(labels), device=batch.device) < self.push_probability
        triplets = torch.where(push[:, None], as_triplets(anchors, anchors, positives),
                               as_triplets(anchors, positives, negatives))
        return triplets[valid]
