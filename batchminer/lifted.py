"""Lifted-structure tuples (Oh Song et al., CVPR 2016; generalised by Hermans et al. 2017)."""
from __future__ import annotations

import torch

from batchminer import REGISTRY
from batchminer.base import LIFTED, BatchMiner, LiftedTuples
from utilities.geometry import same_label_masks


@REGISTRY.register("lifted")
class LiftedMiner(BatchMiner):
    """Per anchor with a positive and a negative: all other samples of its class as positives and all
    samples of other classes as negatives.
    """

    OUTPUT = LIFTED

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor) -> LiftedTuples:
        pos, neg = same_label_masks(labels)
        anchors = torch.nonzero(pos.any(1) & neg.any(1)).squeeze(1)
        return LiftedTuples(anchors, pos[anchors], neg[anchors])
