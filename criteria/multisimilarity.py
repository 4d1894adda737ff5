"""Multi-Similarity loss (Wang, Han, Huang, Dong & Scott, CVPR 2019), with its pair mining, vectorised."""
from __future__ import annotations

import torch

from criteria import REGISTRY
from criteria.base import Criterion
from criteria.distances import same_label_masks


def _log1p_sum_exp(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise log(1 + sum_{j in mask} exp(z_ij)), stable: logsumexp over [0, z_masked]."""
    z = z.masked_fill(~mask, float("-inf"))
    zeros = torch.zeros(z.shape[0], 1, dtype=z.dtype, device=z.device)
    return torch.logsumexp(torch.cat([zeros, z], dim=1), dim=1)


@REGISTRY.register("multisimilarity")
class MultiSimilarityLoss(Criterion):
    """With S = X X^T (cosine similarities on normalised embeddings), for each anchor i:

    * mining: keep negatives n with s_in + eps > min_{p in P_i} s_ip and positives p with
      s_ip - eps < max_{n in N_i} s_in (eps = --loss_multisimilarity_margin, 0.1);
    * term_i = 1/alpha log(1 + sum_p exp(-alpha (s_ip - lambda))) + 1/beta log(1 + sum_n exp(beta (s_in - lambda)))
      with alpha = pos_weight (2), beta = neg_weight (40), lambda = thresh (0.5).

    L = mean over anchors whose kept positive and negative sets are both non-empty; 0 (zero gradient) when
    there is none, e.g. with --samples_per_class 1 (where the reference crashed on an empty stack).
    """

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, batchminer, embed_dim)
        self.alpha = opt.loss_multisimilarity_pos_weight
        self.beta = opt.loss_multisimilarity_neg_weight
        self.epsilon = opt.loss_multisimilarity_margin
        self.thresh = opt.loss_multisimilarity_thresh

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        sim = batch @ batch.T
        pos_mask, neg_mask = same_label_masks(labels)
        sim_d = sim.detach()
        min_pos = sim_d.masked_fill(~pos_mask, float("inf")).min(1, keepdim=True).values
        max_neg = sim_d.masked_fill(~neg_mask, float("-inf")).max(1, keepdim=True).values
        kept_neg = neg_mask & (sim_d + self.epsilon > min_pos)
        kept_pos = pos_mask & (sim_d - self.epsilon < max_neg)
        valid = kept_pos.any(1) & kept_neg.any(1)
        pos_term = _log1p_sum_exp(-self.alpha * (sim - self.thresh), kept_pos) / self.alpha
        neg_term = _log1p_sum_exp(self.beta * (sim - self.thresh), kept_neg) / self.beta
        terms = torch.where(valid, pos_term + neg_term, torch.zeros_like(pos_term))
        n_valid = valid.sum()
        self.record(n_valid)
        return terms.sum() / n_valid.clamp_min(1)
