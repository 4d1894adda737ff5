"""Batch miners: `select(name, opt)` returns a callable `(batch, labels) -> tuples` on detached embeddings.

Triplet miners return a LongTensor of shape (T, 3) with rows (anchor, positive, negative) as batch
indices, on the batch's device; T = 0 when the batch has no valid triplet. Randomness comes from torch's
generator, which `--seed` fixes.

`npair` and `lifted` return `NPairTuples` / `LiftedTuples` (batchminer/base.py) instead; a miner's `OUTPUT`
names its kind, and a loss accepts only miners of the kind it consumes (`Criterion.MINER_OUTPUT`).
"""
from __future__ import annotations

from utilities.registry import Registry

REGISTRY: Registry = Registry("batch miner", "--batch_mining")


def select(name: str, opt):
    return REGISTRY.lookup(name)(opt)


# Importing the miner modules fills REGISTRY.
from batchminer import distance, random_triplets, rho_distance, semihard, softhard  # noqa: E402,F401
from batchminer import epdn, ephn, epshn, intra_random, lifted, npair, parametric, random_distance  # noqa: E402,F401
