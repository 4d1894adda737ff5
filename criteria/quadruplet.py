"""Quadruplet loss (Chen, Chen, Zhang & Huang, "Beyond Triplet Loss: A Deep Quadruplet Network for Person
Re-identification", CVPR 2017)."""
from __future__ import annotations

import torch

from criteria import REGISTRY
from criteria.base import TupleLoss
from criteria.functional import mean_over
from utilities.flags import Bounded, flag
from utilities.geometry import euclidean


@REGISTRY.register("quadruplet")
class QuadrupletLoss(TupleLoss):
    """For mined triplets (a, p, n) and a fourth sample n' whose class differs from both a's and n's:

        L = mean_T relu(d_ap - d_an + alpha_1) + mean_T' relu(d_ap - d_nn' + alpha_2)

    with Euclidean d, alpha_1 = `alpha_1` (--loss_quadruplet_margin_alpha_1), alpha_2 = `alpha_2`
    (--loss_quadruplet_margin_alpha_2).
    n' is uniform over the batch samples of a third class; T' are the triplets for which one exists (the
    second term is 0 when the batch holds only two classes).

    The reference drew n' as a random *triplet index* whose negative differed and used it as a batch index,
    so n' could share a's or n's class; here n' is a sample of a third class, as the paper defines it.
    No triplet: 0 with zero gradient.
    """

    FLAGS = (
        flag("--loss_quadruplet_margin_alpha_1", param="alpha_1", default=0.2, type=Bounded(float, ge=0)),
        flag("--loss_quadruplet_margin_alpha_2", param="alpha_2", default=0.2, type=Bounded(float, ge=0)),
    )

    def __init__(self, alpha_1: float = 0.2, alpha_2: float = 0.2, batchminer=None):
        super().__init__(batchminer)
        self.alpha_1 = alpha_1
        self.alpha_2 = alpha_2

    @property
    def mining_margin(self):
        return self.alpha_1

    @staticmethod
    def fourth_samples(labels: torch.Tensor, triplets: torch.Tensor):
        """(n' per triplet, whether a third-class sample exists for it), uniform over the third classes' samples."""
        y_a, y_n = labels[triplets[:, 0]], labels[triplets[:, 2]]
        third = (labels[None, :] != y_a[:, None]) & (labels[None, :] != y_n[:, None])
        noise = torch.rand(third.shape, device=labels.device).masked_fill(~third, -1.0)
        return noise.argmax(1), third.any(1)

    def tuple_loss(self, batch: torch.Tensor, labels: torch.Tensor, triplets: torch.Tensor) -> torch.Tensor:
        fourth, has_fourth = self.fourth_samples(labels, triplets)
        a, p, n = triplets.unbind(1)
        dist = euclidean(batch)
        d_ap = dist[a, p]
        triplet_term = torch.relu(d_ap - dist[a, n] + self.alpha_1).mean()
        quadruplet_term = mean_over(torch.relu(d_ap - dist[n, fourth] + self.alpha_2), has_fourth)
        return triplet_term + quadruplet_term
