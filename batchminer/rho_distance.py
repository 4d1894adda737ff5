"""rho-regularised distance miner (Roth et al., "Revisiting Training Strategies ... in DML", ICML 2020)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from batchminer import REGISTRY
from batchminer.base import BatchMiner, as_triplets, pairwise, uniform_choice
from batchminer.distance import sample_distance_weighted_negatives
from utilities.flags import Bounded, flag


@REGISTRY.register("rho_distance")
class RhoDistanceMiner(BatchMiner):
    """Distance-weighted triplets where, with probability cp (--miner_rho_distance_cp), an anchor's triplet is
    replaced by (a, a, p'): a same-class sample p' in the negative slot, pushed away to densify the embedding
    space (rho regularisation). Only anchors with a positive (and a negative) take part. Negatives are drawn
    as by the `distance` miner, with the cutoffs --miner_rho_distance_lower_cutoff / _upper_cutoff.
    """

    FLAGS = (
        flag("--miner_rho_distance_lower_cutoff", param="lower_cutoff", default=0.5, type=Bounded(float, gt=0, lt=2)),
        flag("--miner_rho_distance_upper_cutoff", param="upper_cutoff", default=1.4, type=Bounded(float, gt=0)),
        flag("--miner_rho_distance_cp", param="push_probability", default=0.2, type=Bounded(float, ge=0, le=1),
             help="Probability of a rho triplet that pushes a same-class sample away."),
    )

    def __init__(self, lower_cutoff: float = 0.5, upper_cutoff: float = 1.4, push_probability: float = 0.2):
        self.lower_cutoff = lower_cutoff
        self.upper_cutoff = upper_cutoff
        self.push_probability = push_probability

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
