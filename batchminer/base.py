"""Shared miner machinery: the base class, the tuple types miners return, and vectorised random choices."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from criteria.distances import euclidean, same_label_masks


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
    """Base class: `name` is the registry key, `OUTPUT` the kind of tuples returned (TRIPLETS, NPAIRS or
    LIFTED); `bind(criterion)` lets a miner read the loss it serves."""

    name = "base"
    OUTPUT = TRIPLETS

    def __init__(self, opt):
        self.opt = opt

    def bind(self, criterion) -> None:
        """Called once by `criteria.select` with the criterion this miner feeds."""

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MarginAwareMiner(BatchMiner):
    """A miner whose window uses the margin of the loss it serves (`criterion.mining_margin`), bound by
    `criteria.select`, S2SD's source and targets included; a loss without a margin of its own leaves
    --loss_triplet_margin (the reference raised a KeyError for such losses, `s2sd` among them)."""

    def __init__(self, opt):
        super().__init__(opt)
        self.margin = opt.loss_triplet_margin

    def bind(self, criterion) -> None:
        if criterion.mining_margin is not None:
            self.margin = criterion.mining_margin


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
