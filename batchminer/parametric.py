"""Negatives drawn from a fixed, piecewise-constant distribution over anchor-negative distances
(the reference's `parametric` miner, Roth et al. 2020)."""
from __future__ import annotations

from typing import Tuple

import torch

from batchminer import REGISTRY
from batchminer.base import BatchMiner, as_triplets, first_nonempty, pairwise, uniform_choice, weighted_choice
from utilities.errors import UsageError
from utilities.flags import Bounded, flag

#: Mode -> indicator of the distances it prefers (evaluated at each bin's lower edge).
MODES = {
    "uniform": lambda d: torch.ones_like(d),
    "hards": lambda d: (d <= 0.5).to(d.dtype),
    "semihards": lambda d: ((d >= 0.3) & (d <= 0.7)).to(d.dtype),
    "veryhards": lambda d: (d <= 0.3).to(d.dtype),
}


@REGISTRY.register("parametric")
class ParametricMiner(BatchMiner):
    """Per anchor with a positive and a negative: a uniformly random positive, and a negative n drawn with
    probability proportional to w(bin(d_an)).

    The support [lo, hi] (--miner_parametric_support_lim) is cut into n_support - 1 equal bins
    (--miner_parametric_n_support); bin k = (s_k, s_{k+1}] gets the weight of --miner_parametric_mode at its
    lower edge s_k: uniform 1; hards d <= 0.5; semihards 0.3 <= d <= 0.7; veryhards d <= 0.3. Negatives
    outside the support get weight 0. Distances are Euclidean on the embeddings as given.

    When an anchor has no negative of positive weight, the negative is uniform over its in-support negatives,
    then over all its negatives (the reference divided by a zero sum there; its flags were missing, its
    "semihards" mode stopped in a debugger, and its out-of-support mask could never be true).
    """

    FLAGS = (
        flag("--miner_parametric_mode", param="mode", default="uniform", choices=sorted(MODES, key=list(MODES).index),
             help="Which anchor-negative distances the parametric miner draws from."),
        flag("--miner_parametric_n_support", param="n_support", default=100, type=Bounded(int, ge=2),
             help="Number of support points (bin edges) of the parametric miner's distance distribution."),
        flag("--miner_parametric_support_lim", param="support_lim", default=[0.0, 2.0], nargs=2,
             type=Bounded(float, ge=0), metavar=("LO", "HI"), convert=lambda value, opt: tuple(value),
             help="Distance range of the parametric miner; negatives outside it are not drawn."),
    )

    def __init__(self, mode: str = "uniform", n_support: int = 100, support_lim: Tuple[float, float] = (0.0, 2.0)):
        lo, hi = support_lim
        if not lo < hi or n_support < 2:
            raise UsageError("--miner_parametric_support_lim needs LO < HI and --miner_parametric_n_support >= 2")
        if mode not in MODES:
            raise UsageError(f"--miner_parametric_mode: unknown mode '{mode}'; choose one of: {', '.join(MODES)}")
        self.lo, self.hi = float(lo), float(hi)
        self.edges = torch.linspace(lo, hi, n_support)
        self.bin_weights = MODES[mode](self.edges[:-1])

    def in_support(self, dist: torch.Tensor) -> torch.Tensor:
        return (dist >= self.lo) & (dist <= self.hi)

    def negative_weights(self, dist: torch.Tensor) -> torch.Tensor:
        """w(d) for every entry of `dist`: the weight of its bin, 0 outside the support."""
        bins = torch.bucketize(dist, self.edges[1:-1].to(dist.device, dist.dtype))
        return self.bin_weights.to(dist.device, dist.dtype)[bins] * self.in_support(dist)

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist, pos, neg = pairwise(batch, labels)
        valid = pos.any(1) & neg.any(1)
        weights = self.negative_weights(dist)
        preferred = neg & (weights > 0)
        candidates = first_nonempty(preferred, neg & self.in_support(dist), neg)
        log_weights = torch.where(preferred.any(1, keepdim=True), weights.log(), torch.zeros_like(weights))
        negatives = weighted_choice(log_weights, candidates)
        positives = uniform_choice(pos)
        anchors = torch.arange(len(labels), device=batch.device)
        return as_triplets(anchors, positives, negatives)[valid]
