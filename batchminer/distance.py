"""Distance-weighted sampling (Wu, Manmatha, Smola & Kraehenbuehl, "Sampling Matters", ICCV 2017)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from batchminer import REGISTRY
from batchminer.base import BatchMiner, as_triplets, pairwise, uniform_choice, weighted_choice
from utilities.flags import Bounded, flag


def distance_log_weights(dist: torch.Tensor, dim: int, lower_cutoff: float) -> torch.Tensor:
    """log q(d)^-1 for the density of pairwise distances on the unit sphere S^{n-1}, n = dim:

        log w(d) = (2 - n) log d - (n - 3)/2 log(1 - d^2/4),  d clamped to [lower_cutoff, 2 - 1e-4]
    """
    d = dist.clamp(min=lower_cutoff, max=2.0 - 1e-4)
    return (2.0 - dim) * torch.log(d) - (dim - 3) / 2.0 * torch.log(1.0 - 0.25 * d.pow(2))


def sample_distance_weighted_negatives(dist, neg_mask, dim, lower_cutoff, upper_cutoff):
    """One negative per anchor with p(n) ~ w(d_an), restricted to d_an < upper_cutoff when such negatives exist."""
    close = neg_mask & (dist < upper_cutoff)
    allowed = torch.where(close.any(1, keepdim=True), close, neg_mask)
    return weighted_choice(distance_log_weights(dist, dim, lower_cutoff), allowed)


@REGISTRY.register("distance")
class DistanceMiner(BatchMiner):
    """Per anchor: a uniformly random positive and a distance-weighted negative (`lower_cutoff`,
    `upper_cutoff`: --miner_distance_lower_cutoff, --miner_distance_upper_cutoff).

    Weighting needs points on the unit sphere, so distances are taken between L2-normalised embeddings
    (the reference produced NaN for d > 2). Negatives at or beyond --miner_distance_upper_cutoff are not
    drawn unless no closer negative exists (Wu et al.'s non-zero-loss cutoff; the reference's flag did
    nothing). Anchors without a positive (singleton classes) are dropped, where the reference used the
    anchor itself as its positive.
    """

    FLAGS = (
        flag("--miner_distance_lower_cutoff", param="lower_cutoff", default=0.5, type=Bounded(float, gt=0, lt=2),
             help="Distances are clamped from below to this value before distance weighting."),
        flag("--miner_distance_upper_cutoff", param="upper_cutoff", default=1.4, type=Bounded(float, gt=0),
             help="Negatives at or beyond this distance are not sampled (Wu et al.'s non-zero-loss cutoff)."),
    )

    def __init__(self, lower_cutoff: float = 0.5, upper_cutoff: float = 1.4):
        self.lower_cutoff = lower_cutoff
        self.upper_cutoff = upper_cutoff

    def choose_positives(self, dist: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return uniform_choice(pos)

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist, pos, neg = pairwise(F.normalize(batch.detach(), dim=-1), labels)
        valid = pos.any(1) & neg.any(1)
        positives = self.choose_positives(dist, pos)
        negatives = sample_distance_weighted_negatives(dist, neg, batch.shape[1], self.lower_cutoff, self.upper_cutoff)
        anchors = torch.arange(len(labels), device=batch.device)
        return as_triplets(anchors, positives, negatives)[valid]
