"""N-pair loss (Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective", NeurIPS 2016)."""
from __future__ import annotations

import torch

from architectures import parse_arch
from criteria import REGISTRY
from criteria.base import Criterion
from criteria.functional import masked_logsumexp


def npair_terms(batch: torch.Tensor, tuples, clamp: float = None, gram: torch.Tensor = None) -> torch.Tensor:
    """Per anchor a: log(1 + sum_{n in N_a} exp(x_a.x_n - x_a.x_p)), exponents optionally clamped to +-clamp.

    `gram` = batch batch^T when the caller has it already.
    """
    rows = (batch @ batch.T if gram is None else gram)[tuples.anchors]
    logits = rows - rows.gather(1, tuples.positives[:, None])
    if clamp is not None:
        logits = logits.clamp(-clamp, clamp)
    return masked_logsumexp(logits, tuples.negatives, add_one=True)


@REGISTRY.register("npair")
class NPairLoss(Criterion):
    """For the `npair` miner's tuples (anchor a, one positive p, negatives N_a = all other-class samples):

        L = mean_a log(1 + sum_{n in N_a} exp(x_a.x_n - x_a.x_p)) + l2 * mean_i ||x_i||_2

    on the embeddings as given (dot products, not cosines), l2 = --loss_npair_l2. Sohn's batches hold one
    pair per class and use the other pairs' positives as negatives; the reference (and this loss) uses every
    sample of another class. With a bninception backbone the embeddings are divided by 4 first (a reference
    quirk kept for parity: it keeps the initial exponents of the un-normalised 512-d embedding in range).
    No tuple (e.g. --samples_per_class 1): 0, and the l2 term is dropped as in the reference.
    """

    REQUIRES_BATCHMINER = True
    ALLOWED_MINING_OPS = ("npair",)
    MINER_OUTPUT = "npairs"

    def __init__(self, opt, batchminer=None, embed_dim=None):
        super().__init__(opt, batchminer, embed_dim)
        self.l2_weight = opt.loss_npair_l2
        self.scale = 0.25 if parse_arch(opt.arch).name.startswith("bninception") else 1.0

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        tuples = self.batchminer(batch.detach(), labels)
        self.record(len(tuples))
        if len(tuples) == 0:
            return self.zero_loss(batch)
        batch = batch * self.scale
        return npair_terms(batch, tuples).mean() + self.l2_weight * batch.norm(dim=1).mean()
