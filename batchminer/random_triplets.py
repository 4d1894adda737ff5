"""Uniformly random triplets (the `random` miner)."""
from __future__ import annotations

import torch

from batchminer import REGISTRY
from batchminer.base import BatchMiner, as_triplets
from utilities.geometry import same_label_masks


def kth_true_column(mask: torch.Tensor, rows: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """For each (row r, rank k), the column of the k-th (0-based) True entry of mask[r]."""
    ranks = mask[rows].long().cumsum(1) - 1
    return ((ranks == k[:, None]) & mask[rows]).long().argmax(1)


@REGISTRY.register("random")
class RandomMiner(BatchMiner):
    """B triplets drawn uniformly without replacement from every valid (a, p, n) of the batch (a != p share a
    label, n has another), or all of them when fewer than B exist (the reference crashed then).

    A triplet's flat index t enumerates anchors in order, each with P_a * N_a triplets; t is decoded to the
    anchor by a search over the cumulative counts, then to its positive and negative rank.
    """

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pos, neg = same_label_masks(labels)
        n_pos, n_neg = pos.sum(1), neg.sum(1)
        counts = n_pos * n_neg
        total = int(counts.sum())
        if total == 0:
            return torch.empty(0, 3, dtype=torch.long, device=batch.device)
        flat = torch.randperm(total, device=batch.device)[: len(labels)]
        ends = counts.cumsum(0)
        anchors = torch.searchsorted(ends, flat, right=True)
        offset = flat - (ends[anchors] - counts[anchors])
        positives = kth_true_column(pos, anchors, offset // n_neg[anchors])
        negatives = kth_true_column(neg, anchors, offset % n_neg[anchors])
        return as_triplets(anchors, positives, negatives)
