"""Histogram loss (Ustinova & Lempitsky, "Learning Deep Embeddings with Histogram Loss", NeurIPS 2016)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import Criterion
from utilities.flags import Bounded, flag


def soft_histogram(s: torch.Tensor, weights: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """Linear-interpolation histogram of values s in [-1, 1] on the nodes t_r = -1 + r * 2/(R-1), r = 0..R-1.

    Each value adds (1 - f) to its lower node r and f to node r + 1, where (s + 1)/Delta = r + f, times its
    weight (1 for the pairs counted, 0 otherwise). Not normalised.
    """
    delta = 2.0 / (n_nodes - 1)
    position = (s + 1.0) / delta
    lower = position.detach().floor().clamp(0, n_nodes - 2).long()
    frac = position - lower
    hist = torch.zeros(n_nodes, dtype=s.dtype, device=s.device)
    hist = hist.scatter_add(0, lower, (1.0 - frac) * weights)
    return hist.scatter_add(0, lower + 1, frac * weights)


@REGISTRY.register("histogram")
class HistogramLoss(Criterion):
    """With s_ij the cosine similarity of the pairs i < j, h+ and h- the soft histograms (`soft_histogram`,
    R = `n_nodes` nodes on [-1, 1], --loss_histogram_nbins) of the positive and negative pairs, each normalised by its
    pair count, and Phi+_r = sum_{q <= r} h+_q:

        L = sum_r h-_r Phi+_r        (an estimate of P(s_neg > s_pos))

    Cosines are taken on L2-normalised embeddings: the histogram lives on [-1, 1], and the reference's plain
    dot products left it for un-normalised embeddings. A batch without a positive or without a negative
    pair: 0 with zero gradient. `last_tuple_count` counts the positive pairs.
    """

    LEARNS_FROM_PAIRS = True
    FLAGS = (flag("--loss_histogram_nbins", param="n_nodes", default=65, type=Bounded(int, ge=2)),)

    def __init__(self, n_nodes: int = 65):
        super().__init__()
        self.n_nodes = n_nodes

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        x = F.normalize(batch, dim=1)
        i, j = torch.triu_indices(len(labels), len(labels), 1, device=batch.device)
        s = (x @ x.T)[i, j].clamp(-1.0, 1.0)
        same = (labels[i] == labels[j]).to(batch.dtype)
        n_pos, n_neg = same.sum(), (1.0 - same).sum()
        h_pos = soft_histogram(s, same, self.n_nodes) / n_pos.clamp_min(1)
        h_neg = soft_histogram(s, 1.0 - same, self.n_nodes) / n_neg.clamp_min(1)
        valid = (n_pos > 0) & (n_neg > 0)
        self.record(n_pos.long() * valid)
        return torch.where(valid, (h_neg * h_pos.cumsum(0)).sum(), self.zero_loss(batch))
