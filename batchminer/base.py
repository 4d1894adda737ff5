"""Shared miner machinery: the base class, the tuple types miners return, and vectorised random choices."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch

from utilities.flags import Flag, reads
from utilities.geometry import euclidean, same_label_masks


#: What a miner returns; a loss consumes exactly one kind (`Criterion.MINER_OUTPUT`).
TRIPLETS, NPAIRS, LIFTED = "triplets", "npairs", "lifted"


@dataclass(frozen=True)
class NPairTuples:
    """N-pair tuples: per anchor one positive and a set of negatives.

    `anchors`, `positives`: LongTensor (A,) of batch indices; `negatives`: BoolTensor (A, B), row r marks the
    negatives of anchor r. A = 0 for a batch without a valid tuple.
    """

    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor

    def __len__(self) -> int:
        return self.anchors.shape[0]


@dataclass(frozen=True)
class LiftedTuples:
    """Lifted-structure tuples: per anchor a set of positives and a set of negatives.

    `anchors`: LongTensor (A,); `positives`, `negatives`: BoolTensor (A, B) masks over the batch.
    """

    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor

    def __len__(self) -> int:
        return self.anchors.shape[0]


class BatchMiner:
    """Base class: `name` is the registry key (set by `REGISTRY.register`), `OUTPUT` the kind of tuples
    returned (TRIPLETS, NPAIRS or LIFTED), `FLAGS` the command-line flags of its keyword arguments
    (utilities/flags.py); `bind(criterion)` lets a miner read the loss it serves."""

    name = "base"
    OUTPUT = TRIPLETS
    FLAGS: Tuple[Flag, ...] = ()

    def bind(self, criterion) -> None:
        """Called once by the loss this miner feeds (criteria.base.TupleLoss), S2SD's sub-losses included."""

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MarginAwareMiner(BatchMiner):
    """A miner whose window uses the margin of the loss it serves (`criterion.mining_margin`, read at each
    call), S2SD's source and targets included. `margin` (--loss_triplet_margin on the command line) is used
    when the loss has no margin of its own, or before the miner serves a loss (the reference raised a
    KeyError for such losses, `s2sd` among them)."""

    FLAGS = (reads("loss_triplet_margin", "margin"),)

    def __init__(self, margin: float = 0.2):
        self.fallback_margin = margin
        self.served = None

    def bind(self, criterion) -> None:
        self.served = criterion

    @property
    def margin(self) -> float:
        own = None if self.served is None else self.served.mining_margin
        return self.fallback_margin if own is None else own


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


def nearest(dist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row, the column of the smallest distance among `mask` (arbitrary for rows without a True entry)."""
    return dist.masked_fill(~mask, float("inf")).argmin(1)


def first_nonempty(*masks: torch.Tensor) -> torch.Tensor:
    """Per row, the first of `masks` that has a True entry in that row (the last one otherwise)."""
    chosen = masks[-1]
    for mask in reversed(masks[:-1]):
        chosen = torch.where(mask.any(1, keepdim=True), mask, chosen)
    return chosen


def as_triplets(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    return torch.stack([anchors, positives, negatives], dim=1).long()
