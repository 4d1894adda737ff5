"""Circle loss (Sun, Cheng, Zhang, Zhang, Zheng, Wang & Wei, "Circle Loss: A Unified Perspective of Pair
Similarity Optimization", CVPR 2020), the pair-wise form."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import Criterion
from utilities.flags import Bounded, flag
from utilities.geometry import same_label_masks
from criteria.functional import masked_logsumexp, mean_over


@REGISTRY.register("circle")
class CircleLoss(Criterion):
    """With cosine similarities s, per anchor i with positives P_i and negatives N_i:

        alpha_p = [1 + m - s_p]_+,  alpha_n = [s_n + m]_+          (treated as constants, no gradient)
        L_i = softplus( log sum_{n in N_i} exp(gamma alpha_n (s_n - m))
                      + log sum_{p in P_i} exp(-gamma alpha_p (s_p - (1 - m))) )
        L = mean over anchors with a positive and a negative

    m = `m` (--loss_circle_m, 0.4), gamma = `gamma` (--loss_circle_gamma, 80): the paper's fine-grained
    retrieval setting.
    Not in the reference. A batch without such an anchor: 0 with zero gradient; `last_tuple_count` counts
    the anchors.
    """

    LEARNS_FROM_PAIRS = True
    FLAGS = (
        flag("--loss_circle_m", param="m", default=0.4, type=Bounded(float, ge=0), help="Circle loss relaxation m."),
        flag("--loss_circle_gamma", param="gamma", default=80, type=Bounded(float, gt=0),
             help="Circle loss scale gamma."),
    )

    def __init__(self, m: float = 0.4, gamma: float = 80):
        super().__init__()
        self.m = m
        self.gamma = gamma

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        x = F.normalize(batch, dim=1)
        sim = x @ x.T
        pos, neg = same_label_masks(labels)
        alpha_p = torch.relu(1.0 + self.m - sim.detach())
        alpha_n = torch.relu(sim.detach() + self.m)
        pos_lse = masked_logsumexp(-self.gamma * alpha_p * (sim - (1.0 - self.m)), pos)
        neg_lse = masked_logsumexp(self.gamma * alpha_n * (sim - self.m), neg)
        valid = pos.any(1) & neg.any(1)
        self.record(valid.sum())
        return mean_over(F.softplus(pos_lse + neg_lse), valid)
