"""N-pair tuples (Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective", NeurIPS 2016)."""
from __future__ import annotations

import torch

from batchminer import REGISTRY
from batchminer.base import NPAIRS, BatchMiner, NPairTuples, uniform_choice
from utilities.geometry import same_label_masks


@REGISTRY.register("npair")
class NPairMiner(BatchMiner):
    """Per anchor with a positive and a negative: one uniformly random positive, and every sample of
    another class as its negative set (as the reference; Sohn's batches hold exactly one pair per class, so
    there the negatives would be the other pairs' positives only).
    """

    OUTPUT = NPAIRS

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> NPairTuples:
        pos, neg = same_label_masks(labels)
        anchors = torch.nonzero(pos.any(1) & neg.any(1)).squeeze(1)
        positives = uniform_choice(pos[anchors])
        return NPairTuples(anchors, positives, neg[anchors])
