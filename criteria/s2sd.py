"""S2SD: Simultaneous Similarity-based Self-Distillation (Roth, Milbich, Ommer, Cohen & Ghassemi, ICML 2021).

A criterion that wraps a source criterion. During training only, it adds target branches on the backbone
features, each trained with its own DML loss, and distills their batch similarity structure into the base
embedding. Test-time cost is unchanged: the branches are never evaluated.

Notation: x = base embeddings (B x D), g = backbone features (B x F), T = `T` (--loss_s2sd_T),
w = `w` (--loss_s2sd_w), w_f = `feat_w` (--loss_s2sd_feat_w), sim(u) = u_hat u_hat^T with u_hat = u / ||u||_2.

    z_i   = normalise(MLP_i(g)),  MLP_i = Linear(F, t_i) -> ReLU -> Linear(t_i, t_i)
    KL(A || B) = T^2 / B * sum_rows sum_cols softmax(A/T) * (log softmax(A/T) - log softmax(B/T))
    L     = (L_src(x) + mean_i L_tgt,i(z_i)) / 2 + w * mean_i KL(sim(z_i).detach() || sim(x))
          + [iteration >= delay] * w_f * KL(sim(g).detach() || sim(x))        (with `feat_distill`)

The targets are the teachers: their similarities are detached, so the KL terms move the base embedding
(and through it the backbone), never the target branches. g is not detached for the branches, so their
losses train the backbone too. With `pool_aggr` the branches read GAP + GMP of the feature map.

In your own loop (docs/python_api.md): `S2SD(feature_dim=F)` is the reference's default (multisimilarity
source and targets, target widths 512, 1024, 1536, 2048), and `loss = s2sd(embeds, labels, features=pooled)`;
add `s2sd.param_groups()` to the optimizer, which holds the target heads and the sub-losses' own parameters.

Where this differs from the reference code (REFERENCE.md §2.17, §6) and why; the items marked (parity)
switch back to the reference's behaviour with --reference_parity (docs/reference_parity.md):
* the source criterion sees the embedding exactly as the backbone emits it (the reference re-normalised
  it, so an arch without `normalize` trained on one geometry and was evaluated on another); the
  similarity matrices are cosine in both versions (parity: `normalise_source=True`);
* F comes from the backbone (`feature_dim`), not a hard-coded 2048/1024;
* each sub-criterion's parameters keep their own optimizer group and lr (margin beta at its beta lr ...)
  (parity: the CLI builds the sub-losses with their own-lr argument set to --lr, `Criterion.OWN_LR_PARAM`);
* the target branches get the network's weight decay (the reference gave them none) (parity:
  `head_weight_decay=0`);
* the iteration counter is a buffer, so checkpoints carry it and a resumed run keeps the delay;
* miners are built only for sub-criteria that use them, each told the margin of the loss it serves;
* `last_tuple_count` is the smallest count of the source and target criteria, so a step counts as
  degenerate in the logs when any of them had nothing to learn from (the branches see the same labels, so
  a batch without positives starves all of them at once; a miner can still starve only one).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from criteria import REGISTRY, from_opt
from criteria.base import Criterion
from criteria.multisimilarity import MultiSimilarityLoss
from utilities.distributed import gather_rows, gather_rows_detached
from utilities.flags import Bounded, flag, reads

#: A criterion, or what builds one: S2SD's `source` may be a zero-argument factory, `target` one of the width.
SourceCriterion = Union[Criterion, Callable[[], Criterion]]
TargetCriteria = Union[Callable[[int], Criterion], Sequence[Criterion]]


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
    """The S2SD criterion; see the module docstring for the formula.

    * `source`: the criterion of the base embedding, or a zero-argument factory of it (called after the
      target heads are built, which is the order the CLI draws random numbers in); default multisimilarity;
    * `target`: a factory `width -> criterion`, called once per entry of `target_dims`, or a list with one
      criterion per entry; default multisimilarity;
    * `feature_dim`: F, the width of the backbone features the heads read;
    * `target_dims`, `T`, `w`, `feat_distill`, `feat_w`, `feat_distill_delay`, `pool_aggr`: as the
      --loss_s2sd_* flags; `head_lr`, `head_weight_decay`: the optimizer group of the target heads (the CLI
      passes --lr and --decay, or 0 under --reference_parity);
    * `normalise_source`: the source criterion sees normalise(x) instead of x (the reference; the same on
      `_normalize` archs).
    """

    FLAGS = (
        flag("--loss_s2sd_source", "--loss_distill_source", param=None, default="multisimilarity", type=str,
             help="Criterion of the base (source) embedding."),
        flag("--loss_s2sd_target", "--loss_distill_target", param=None, default="multisimilarity", type=str,
             help="Criterion of every target branch."),
        flag("--loss_s2sd_T", "--loss_distill_T", param="T", default=1.0, type=Bounded(float, gt=0),
             help="Temperature of the similarity distillation."),
        flag("--loss_s2sd_w", "--loss_distill_w", param="w", default=50.0, type=Bounded(float, ge=0),
             help="Weight of the mean KL similarity distillation."),
        flag("--loss_s2sd_pool_aggr", param="pool_aggr", action="store_true",
             help="Target branches read global average + global max pooled features."),
        flag("--loss_s2sd_target_dims", "--loss_distill_net_dims", param="target_dims",
             default=[512, 1024, 1536, 2048], nargs="+", type=Bounded(int, ge=1), convert=lambda dims, opt: tuple(dims),
             help="Width of each target branch."),
        flag("--loss_s2sd_feat_distill", "--loss_distill_match_feats", param="feat_distill", action="store_true",
             help="Also distill the backbone feature similarities."),
        flag("--loss_s2sd_feat_w", "--loss_distill_feat_w", "--loss_s2sd_feat_distill_w", param="feat_w",
             default=50.0, type=Bounded(float, ge=0), help="Weight of the feature distillation."),
        flag("--loss_s2sd_feat_distill_delay", "--loss_distill_max_feat_iter", param="feat_distill_delay",
             default=1000, type=Bounded(int, ge=0), help="Training iterations before feature distillation starts."),
        reads("lr", "head_lr"),
        reads("decay", "head_weight_decay", convert=lambda decay, opt: 0.0 if opt.reference_parity else decay),
        reads("reference_parity", "normalise_source"),
    )

    def __init__(self, source: Optional[SourceCriterion] = None, target: Optional[TargetCriteria] = None, *,
                 feature_dim: int, target_dims: Sequence[int] = (512, 1024, 1536, 2048), T: float = 1.0,
                 w: float = 50.0, feat_distill: bool = False, feat_w: float = 50.0, feat_distill_delay: int = 1000,
                 pool_aggr: bool = False, head_lr: float = 0.00001, head_weight_decay: float = 0.0004,
                 normalise_source: bool = False):
        super().__init__()
        self.normalise_source = normalise_source
        self.target_dims = tuple(target_dims)
        self.temperature = T
        self.w = w
        self.feat_w = feat_w
        self.pool_aggr = pool_aggr
        self.feat_distill = feat_distill
        self.feat_distill_delay = feat_distill_delay
        self.head_lr = head_lr
        self.head_decay = head_weight_decay
        self.target_nets = nn.ModuleList(
            nn.Sequential(nn.Linear(feature_dim, t), nn.ReLU(), nn.Linear(t, t)) for t in self.target_dims
        )
        if target is None:
            target = lambda width: MultiSimilarityLoss()  # noqa: E731
        targets = [target(t) for t in self.target_dims] if callable(target) else list(target)
        if len(targets) != len(self.target_dims):
            raise ValueError(f"S2SD: {len(targets)} target criteria for {len(self.target_dims)} target_dims")
        self.target_criteria = nn.ModuleList(targets)
        if source is None:
            source = MultiSimilarityLoss
        self.source_criterion = source if isinstance(source, nn.Module) else source()
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.last_terms: Dict[str, torch.Tensor] = {}

    @classmethod
    def options_from(cls, opt, *, n_classes=None, embed_dim=None, feature_dim=None) -> dict:
        """The flags, with the source and target criteria built from --loss_s2sd_source / --loss_s2sd_target
        (the target ones at their branch width). Under --reference_parity a sub-loss whose parameters have an
        lr flag of their own trains them at --lr, as the reference's S2SD did."""
        def build(name: str, width: int) -> Criterion:
            own_lr = REGISTRY[name].OWN_LR_PARAM
            overrides = {own_lr: opt.lr} if opt.reference_parity and own_lr else {}
            return from_opt(name, opt, n_classes=n_classes, embed_dim=width, feature_dim=feature_dim, **overrides)

        return {**super().options_from(opt), "source": lambda: build(opt.loss_s2sd_source, embed_dim),
                "target": lambda width: build(opt.loss_s2sd_target, width)}

    def describe(self) -> str:
        return (f"S2SD (source {self.source_criterion.name}, target {self.target_criteria[0].name} x "
                f"{list(self.target_dims)})")

    def miner_names(self) -> List[str]:
        return [name for c in (self.source_criterion, *self.target_criteria) for name in c.miner_names()]

    def param_groups(self) -> List[dict]:
        groups = [{"params": list(self.target_nets.parameters()), "lr": self.head_lr,
                   "weight_decay": self.head_decay, "name": "s2sd_target_nets"}]
        for criterion in [*self.target_criteria, self.source_criterion]:
            groups.extend(criterion.param_groups())
        return groups

    def branch_input(self, avg_batch_features: Optional[torch.Tensor], batch_features: Optional[torch.Tensor]):
        """g: the pooled features, or GAP + GMP of the feature map with `pool_aggr`."""
        if self.pool_aggr:
            if batch_features is None:
                raise ValueError("S2SD(pool_aggr=True) reads the feature map: pass features of shape B x F x h x w")
            return (F.adaptive_avg_pool2d(batch_features, 1) + F.adaptive_max_pool2d(batch_features, 1)).flatten(1)
        if avg_batch_features is None:
            if batch_features is None:
                raise ValueError("S2SD needs the backbone features: s2sd(embeds, labels, features=pooled)")
            return F.adaptive_avg_pool2d(batch_features, 1).flatten(1)
        return avg_batch_features

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, features: Optional[torch.Tensor] = None, *,
                avg_batch_features: Optional[torch.Tensor] = None, batch_features: Optional[torch.Tensor] = None,
                **kwargs) -> torch.Tensor:
        """`features`: the backbone's pooled features (B x F) or its feature map (B x F x h x w); the training
        loop passes them as `avg_batch_features` and `batch_features` (the reference's names)."""
        if features is not None:
            if features.dim() == 4:
                batch_features = features
            else:
                avg_batch_features = features
        g = self.branch_input(avg_batch_features, batch_features)
        return self.distilled_loss(batch, labels, g, kwargs, gather=lambda x: x, gather_target=lambda x: x)

    def global_loss(self, batch: torch.Tensor, labels: torch.Tensor, *, avg_batch_features=None, batch_features=None,
                    **kwargs) -> torch.Tensor:
        """The loss of the global batch from this process's rows (utilities/distributed.py): the heads run on
        the local features, and the embeddings, labels and every head's output are gathered with gradient,
        so each similarity matrix, KL term and sub-loss is the global batch's; the feature-distillation
        target (detached) is gathered without gradient."""
        g = self.branch_input(avg_batch_features, batch_features)
        return self.distilled_loss(batch, labels, g, kwargs, gather=gather_rows, gather_target=gather_rows_detached)

    def distilled_loss(self, batch: torch.Tensor, labels: torch.Tensor, g: torch.Tensor, kwargs: dict, *,
                       gather: Callable[[torch.Tensor], torch.Tensor],
                       gather_target: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The formula of the module docstring on the batch that `gather` makes of the rows of `batch`,
        `labels` and the head outputs on `g` (and `gather_target` of the detached feature target)."""
        batch, labels = gather(batch), gather(labels)
        source_loss = self.source_criterion(F.normalize(batch, dim=-1) if self.normalise_source else batch, labels,
                                            **kwargs)
        source_sim = cosine_similarity_matrix(batch)

        target_losses, kls = [], []
        for net, criterion in zip(self.target_nets, self.target_criteria):
            z = gather(F.normalize(net(g), dim=-1))
            target_losses.append(criterion(z, labels, **kwargs))
            kls.append(similarity_kl((z @ z.T).detach(), source_sim, self.temperature))
        target_loss = torch.stack(target_losses).mean()
        kl = torch.stack(kls).mean()
        loss = 0.5 * (source_loss + target_loss) + self.w * kl
        terms = {"source": source_loss.detach(), "target": target_loss.detach(), "kl": kl.detach()}

        if self.feat_distill:
            # The switch is a 0/1 tensor, not a Python branch, so the step needs no host synchronisation.
            active = (self.iteration >= self.feat_distill_delay).to(batch.dtype)
            feat_kl = similarity_kl(cosine_similarity_matrix(gather_target(g.detach())), source_sim, self.temperature)
            loss = loss + active * self.feat_w * feat_kl
            terms["feat_kl"] = (active * feat_kl).detach()

        if self.training:
            self.iteration += 1
        self.last_terms = terms
        counts = [c.last_tuple_count for c in (self.source_criterion, *self.target_criteria)]
        self.last_tuple_count = torch.stack([torch.as_tensor(c, device=batch.device) for c in counts]).min()
        return loss
