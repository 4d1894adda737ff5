"""N-pair loss (Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective", NeurIPS 2016)."""
from __future__ import annotations

import torch

from architectures import parse_arch
from batchminer import NPAIRS
from criteria import REGISTRY
from criteria.base import TupleLoss
from criteria.functional import masked_logsumexp
from utilities.flags import Bounded, flag, reads


def npair_terms(batch: torch.Tensor, tuples, clamp: float = None, gram: torch.Tensor = None) -> torch.Tensor:
    """Per anchor a: log(1 + sum_{n in N_a} exp(x_a.x_n - x_a.x_p)), exponents optionally clamped to +-clamp.

    `gram` = batch batch^T when the caller has it already.
    """
    rows = (batch @ batch.T if gram is None else gram)[tuples.anchors]
    logits = rows - rows.gather(1, tuples.positives[:, None])
    if clamp is not None:
        logits = logits.clamp(-clamp, clamp)
    return masked_logsumexp(logits, tuples.negatives, add_one=True)


def reference_embedding_scale(arch: str) -> float:
    """The reference divided the N-pair loss's embeddings by 4 on bninception backbones (--arch bninception*)."""
    return 0.25 if parse_arch(arch).name.startswith("bninception") else 1.0


@REGISTRY.register("npair")
class NPairLoss(TupleLoss):
    """For the `npair` miner's tuples (anchor a, one positive p, negatives N_a = all other-class samples):

        L = mean_a log(1 + sum_{n in N_a} exp(x_a.x_n - x_a.x_p)) + l2 * mean_i ||x_i||_2

    on the embeddings as given (dot products, not cosines), l2 = `l2_weight` (--loss_npair_l2). Sohn's batches
    hold one pair per class and use the other pairs' positives as negatives; the reference (and this loss)
    uses every sample of another class. The embeddings are multiplied by `embedding_scale` first; the CLI
    passes 0.25 for a bninception backbone (`reference_embedding_scale`, a reference quirk kept for parity:
    it keeps the initial exponents of the un-normalised 512-d embedding in range).
    No tuple (e.g. --samples_per_class 1): 0, and the l2 term is dropped as in the reference.
    """

    ALLOWED_MINING_OPS = ("npair",)
    MINER_OUTPUT = NPAIRS
    FLAGS = (
        flag("--loss_npair_l2", param="l2_weight", default=0.005, type=Bounded(float, ge=0)),
        reads("arch", "embedding_scale", convert=lambda arch, opt: reference_embedding_scale(arch)),
    )

    def __init__(self, l2_weight: float = 0.005, embedding_scale: float = 1.0, batchminer=None):
        super().__init__(batchminer)
        self.l2_weight = l2_weight
        self.scale = embedding_scale

    def tuple_loss(self, batch: torch.Tensor, labels: torch.Tensor, tuples) -> torch.Tensor:
        batch = batch * self.scale
        return npair_terms(batch, tuples).mean() + self.l2_weight * batch.norm(dim=1).mean()
