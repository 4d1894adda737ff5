"""S2SD: Simultaneous Similarity-based Self-Distillation (Roth, Milbich, Ommer, Cohen & Ghassemi, ICML 2021).

A criterion that wraps a source criterion. During training only, it adds target branches on the backbone
features, each trained with its own DML loss, and distills their batch similarity structure into the base
embedding. Test-time cost is unchanged: the branches are never evaluated.

Notation: x = base embeddings (B x D), g = backbone features (B x F), T = --loss_s2sd_T,
w = --loss_s2sd_w, w_f = --loss_s2sd_feat_w, sim(u) = u_hat u_hat^T with u_hat = u / ||u||_2 (cosine).

    z_i   = normalise(MLP_i(g)),  MLP_i = Linear(F, t_i) -> ReLU -> Linear(t_i, t_i)
    KL(A || B) = T^2 / B * sum_rows sum_cols softmax(A/T) * (log softmax(A/T) - log softmax(B/T))
    L     = (L_src(x) + mean_i L_tgt,i(z_i)) / 2 + w * mean_i KL(sim(z_i).detach() || sim(x))
          + [iteration >= delay] * w_f * KL(sim(g).detach() || sim(x))        (with --loss_s2sd_feat_distill)

The targets are the teachers: their similarities are detached, so the KL terms move the base embedding
(and through it the backbone), never the target branches. g is not detached for the branches, so their
losses train the backbone too. With --loss_s2sd_pool_aggr the branches read GAP + GMP of the feature map.

Where this differs from the reference code (REFERENCE.md §2.17, §6) and why:
* the source criterion sees the embedding exactly as the backbone emits it (the reference re-normalised
  it, so an arch without `normalize` trained on one geometry and was evaluated on another); the
  similarity matrices are cosine in both versions;
* F comes from the backbone (`opt.feature_dim`), not a hard-coded 2048/1024;
* each sub-criterion's parameters keep their own optimizer group and lr (margin beta at its beta lr ...);
* the target branches get the network's weight decay (the reference gave them none);
* the iteration counter is a buffer, so checkpoints carry it and a resumed run keeps the delay;
* miners are built only for sub-criteria that use them, each told the margin of the loss it serves;
* `last_tuple_count` is the smallest count of the source and target criteria, so a step counts as
  degenerate in the logs when any of them had nothing to learn from (the branches see the same labels, so
  a batch without positives starves all of them at once; a miner can still starve only one).
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F

from criteria import REGISTRY
from criteria.base import Criterion


def cosine_similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    x = F.normalize(x, dim=-1)
    return x @ x.T


def similarity_kl(teacher_sim: torch.Tensor, student_sim: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2/B * sum_ij p_ij (log p_ij - log q_ij), p = softmax(teacher/T), q = softmax(student/T), row-wise."""
    log_q = F.log_softmax(student_sim / temperature, dim=1)
    p = F.softmax(teacher_sim / temperature, dim=1)
    kl = F.kl_div(log_q, p, reduction="sum")
    return kl * temperature**2 / student_sim.shape[0]


@REGISTRY.register("s2sd")
class S2SD(Criterion):
    """The S2SD criterion; see the module docstring for the formula."""

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, None, embed_dim)
        from criteria import select

        self.temperature = opt.loss_s2sd_T
        self.w = opt.loss_s2sd_w
        self.feat_w = opt.loss_s2sd_feat_w
        self.pool_aggr = opt.loss_s2sd_pool_aggr
        self.feat_distill = opt.loss_s2sd_feat_distill
        self.feat_distill_delay = opt.loss_s2sd_feat_distill_delay
        self.head_lr = opt.lr
        self.head_decay = opt.decay
        feature_dim = opt.feature_dim
        self.target_nets = nn.ModuleList(
            nn.Sequential(nn.Linear(feature_dim, t), nn.ReLU(), nn.Linear(t, t)) for t in opt.loss_s2sd_target_dims
        )
        self.target_criteria = nn.ModuleList(
            select(opt.loss_s2sd_target, opt, embed_dim=t) for t in opt.loss_s2sd_target_dims
        )
        self.source_criterion = select(opt.loss_s2sd_source, opt, embed_dim=self.embed_dim)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.last_terms: Dict[str, torch.Tensor] = {}

    def param_groups(self) -> List[dict]:
        groups = [{"params": list(self.target_nets.parameters()), "lr": self.head_lr,
                   "weight_decay": self.head_decay, "name": "s2sd_target_nets"}]
        for criterion in [*self.target_criteria, self.source_criterion]:
            groups.extend(criterion.param_groups())
        return groups

    def branch_input(self, avg_batch_features: torch.Tensor, batch_features: torch.Tensor) -> torch.Tensor:
        if self.pool_aggr:
            return (F.adaptive_avg_pool2d(batch_features, 1) + F.adaptive_max_pool2d(batch_features, 1)).flatten(1)
        return avg_batch_features

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, avg_batch_features: torch.Tensor = None,
                batch_features: torch.Tensor = None, **kwargs) -> torch.Tensor:
        source_loss = self.source_criterion(batch, labels, **kwargs)
        source_sim = cosine_similarity_matrix(batch)
        g = self.branch_input(avg_batch_features, batch_features)

        target_losses, kls = [], []
        for net, criterion in zip(self.target_nets, self.target_criteria):
            z = F.normalize(net(g), dim=-1)
            target_losses.append(criterion(z, labels, **kwargs))
            kls.append(similarity_kl((z @ z.T).detach(), source_sim, self.temperature))
        target_loss = torch.stack(target_losses).mean()
        kl = torch.stack(kls).mean()
        loss = 0.5 * (source_loss + target_loss) + self.w * kl
        terms = {"source": source_loss.detach(), "target": target_loss.detach(), "kl": kl.detach()}

        if self.feat_distill:
            # The switch is a 0/1 tensor, not a Python branch, so the step needs no host synchronisation.
            active = (self.iteration >= self.feat_distill_delay).to(batch.dtype)
            feat_kl = similarity_kl(cosine_similarity_matrix(g).detach(), source_sim, self.temperature)
            loss = loss + active * self.feat_w * feat_kl
            terms["feat_kl"] = (active * feat_kl).detach()

        if self.training:
            self.iteration += 1
        self.last_terms = terms
        counts = [c.last_tuple_count for c in (self.source_criterion, *self.target_criteria)]
        self.last_tuple_count = torch.stack([torch.as_tensor(c, device=batch.device) for c in counts]).min()
        return loss
