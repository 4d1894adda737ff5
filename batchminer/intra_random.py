"""Intra-class random triplets (the reference's `intra_random`, used for DiVA-style intra-class tasks)."""
from __future__ import annotations

import torch

from batchminer import REGISTRY
from batchminer.base import BatchMiner, as_triplets, uniform_choice


@REGISTRY.register("intra_random")
class IntraRandomMiner(BatchMiner):
    """B triplets (a, p, n) whose three samples all share one class: each draw picks a class uniformly
    among the batch's classes with at least three samples, then three distinct samples of it in random order.

    These triplets are not class-discriminative on purpose: they train an embedding to separate samples
    *within* a class. The reference drew a, p, n with replacement, so (i, i, i) triplets that carry no
    signal were common; here they are distinct, and a batch without a class of three or more samples gives
    no triplet (a degenerate step).
    """

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b = len(labels)
        if b < 3:
            return torch.empty(0, 3, dtype=torch.long, device=batch.device)
        same = labels[:, None] == labels[None, :]
        index = torch.arange(b, device=labels.device)
        first_of_class = ~(same & (index[None, :] < index[:, None])).any(1)
        eligible = first_of_class & (same.sum(1) >= 3)
        representatives = uniform_choice(eligible.expand(b, b))
        members = same[representatives]
        noise = torch.rand(members.shape, device=labels.device).masked_fill(~members, -1.0)
        a, p, n = noise.topk(3, dim=1).indices.unbind(1)
        keep = eligible.any().expand(b)
        return as_triplets(a, p, n)[keep]
