"""Multi-Similarity loss (Wang, Han, Huang, Dong & Scott, CVPR 2019), with its pair mining, vectorised."""
from __future__ import annotations

import torch

from criteria import REGISTRY
from criteria.base import Criterion
from criteria.functional import masked_logsumexp
from utilities.flags import Bounded, flag
from utilities.geometry import same_label_masks


@REGISTRY.register("multisimilarity")
class MultiSimilarityLoss(Criterion):
    """With S = X X^T (cosine similarities on normalised embeddings), for each anchor i:

    * mining: keep negatives n with s_in + eps > min_{p in P_i} s_ip and positives p with
      s_ip - eps < max_{n in N_i} s_in (eps = `margin`, --loss_multisimilarity_margin, 0.1);
    * term_i = 1/alpha log(1 + sum_p exp(-alpha (s_ip - lambda))) + 1/beta log(1 + sum_n exp(beta (s_in - lambda)))
      with alpha = `pos_weight` (2), beta = `neg_weight` (40), lambda = `thresh` (0.5), each
      --loss_multisimilarity_<name>.

    L = mean over anchors whose kept positive and negative sets are both non-empty; 0 (zero gradient) when
    there is none, e.g. with --samples_per_class 1 (where the reference crashed on an empty stack).
    """

    LEARNS_FROM_PAIRS = True
    FLAGS = (
        flag("--loss_multisimilarity_pos_weight", param="pos_weight", default=2, type=Bounded(float, gt=0)),
        flag("--loss_multisimilarity_neg_weight", param="neg_weight", default=40, type=Bounded(float, gt=0)),
        flag("--loss_multisimilarity_margin", param="margin", default=0.1, type=Bounded(float, ge=0)),
        flag("--loss_multisimilarity_thresh", param="thresh", default=0.5, type=Bounded(float, ge=-1, le=1)),
    )

    def __init__(self, pos_weight: float = 2, neg_weight: float = 40, margin: float = 0.1, thresh: float = 0.5):
        super().__init__()
        self.alpha = pos_weight
        self.beta = neg_weight
        self.epsilon = margin
        self.thresh = thresh

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        sim = batch @ batch.T
        pos_mask, neg_mask = same_label_masks(labels)
        sim_d = sim.detach()
        min_pos = sim_d.masked_fill(~pos_mask, float("inf")).min(1, keepdim=True).values
        max_neg = sim_d.masked_fill(~neg_mask, float("-inf")).max(1, keepdim=True).values
        kept_neg = neg_mask & (sim_d + self.epsilon > min_pos)
        kept_pos = pos_mask & (sim_d - self.epsilon < max_neg)
        valid = kept_pos.any(1) & kept_neg.any(1)
        pos_term = masked_logsumexp(-self.alpha * (sim - self.thresh), kept_pos, add_one=True) / self.alpha
        neg_term = masked_logsumexp(self.beta * (sim - self.thresh), kept_neg, add_one=True) / self.beta
        terms = torch.where(valid, pos_term + neg_term, torch.zeros_like(pos_term))
        n_valid = valid.sum()
        self.record(n_valid)
        return terms.sum() / n_valid.clamp_min(1)
