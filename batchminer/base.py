"""Shared miner machinery: the base class and vectorised random choices over boolean masks."""
from __future__ import annotations

import torch

from criteria.distances import euclidean, same_label_masks


class BatchMiner:
    """Base class: `name` is the registry key; `bind(criterion)` lets a miner read the loss it serves."""

    name = "base"

    def __init__(self, opt):
        self.opt = opt

    def bind(self, criterion) -> None:
        """Called once by `criteria.select` with the criterion this miner feeds."""

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def pairwise(batch: torch.Tensor, labels: torch.Tensor):
    """(distances, positive mask, negative mask) of a detached batch; distances are Euclidean."""
    batch = batch.detach()
    dist = euclidean(batch, eps=0.0)
    pos, neg = same_label_masks(labels)
    return dist, pos, neg


def uniform_choice(mask: torch.Tensor) -> torch.Tensor:
    """Per row, a uniformly random column where `mask` is True (argmax of masked uniform noise).

    Rows with no True entry return an arbitrary column; callers filter them with `mask.any(1)`.
    """
    noise = torch.rand(mask.shape, device=mask.device)
    return noise.masked_fill(~mask, -1.0).argmax(1)


def weighted_choice(log_weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row, a column drawn with probability proportional to exp(log_weights) among `mask` (Gumbel-max)."""
    u = torch.rand(mask.shape, device=mask.device).clamp_(1e-12, 1.0 - 1e-7)
    gumbel = -torch.log(-torch.log(u))
    scores = (log_weights + gumbel).masked_fill(~mask, float("-inf"))
    return scores.argmax(1)


def as_triplets(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    return torch.stack([anchors, positives, negatives], dim=1).long()
