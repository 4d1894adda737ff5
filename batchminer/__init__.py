"""Batch miners: callables `(batch, labels) -> tuples` on detached embeddings.

Build one in Python with its keyword arguments, `batchminer.DistanceMiner(upper_cutoff=1.4)`, or by registry
name, `batchminer.select("distance")`; the CLI builds `--batch_mining` with `from_opt(name, opt)` from the
flags each miner declares next to its class (`FLAGS`, utilities/flags.py).

Triplet miners return a LongTensor of shape (T, 3) with rows (anchor, positive, negative) as batch
indices, on the batch's device; T = 0 when the batch has no valid triplet. Randomness comes from torch's
generator, which `--seed` fixes.

`npair` and `lifted` return `NPairTuples` / `LiftedTuples` (batchminer/base.py) instead; a miner's `OUTPUT`
names its kind, and a loss accepts only miners of the kind it consumes (`Criterion.MINER_OUTPUT`).
"""
from __future__ import annotations

from utilities import flags
from utilities.registry import ComponentRegistry

REGISTRY: ComponentRegistry = ComponentRegistry("batch miner", "--batch_mining")


def from_opt(name: str, opt):
    """The CLI's miner: class `name` with the keyword arguments its flags give in the parsed namespace `opt`."""
    cls = REGISTRY.lookup(name)
    return cls(**flags.options(opt, cls.FLAGS))


def select(name: str, opt=None, **hyperparameters):
    """Miner `name`: from the parsed flags `opt` (the CLI path, `from_opt`), or else from `hyperparameters`
    with the reference's defaults for the rest."""
    if opt is not None:
        if hyperparameters:
            raise TypeError("batchminer.select: pass the parsed flags or keyword arguments, not both")
        return from_opt(name, opt)
    return REGISTRY.lookup(name)(**hyperparameters)


# Importing the miner modules fills REGISTRY; the first three in the order of their flags in --help.
from batchminer.base import LIFTED, NPAIRS, TRIPLETS, BatchMiner, LiftedTuples, NPairTuples  # noqa: E402,F401
from batchminer.distance import DistanceMiner  # noqa: E402,F401
from batchminer.rho_distance import RhoDistanceMiner  # noqa: E402,F401
from batchminer.parametric import ParametricMiner  # noqa: E402,F401
from batchminer.epdn import EPDNMiner  # noqa: E402,F401
from batchminer.ephn import EPHNMiner  # noqa: E402,F401
from batchminer.epshn import EPSHNMiner  # noqa: E402,F401
from batchminer.intra_random import IntraRandomMiner  # noqa: E402,F401
from batchminer.lifted import LiftedMiner  # noqa: E402,F401
from batchminer.npair import NPairMiner  # noqa: E402,F401
from batchminer.random_distance import RandomDistanceMiner  # noqa: E402,F401
from batchminer.random_triplets import RandomMiner  # noqa: E402,F401
from batchminer.semihard import SemihardMiner  # noqa: E402,F401
from batchminer.softhard import SofthardMiner  # noqa: E402,F401

#: The miner a tuple loss gets when it is built without one: the reference's default --batch_mining for
#: triplet losses, the only miner of its kind otherwise.
DEFAULT_MINERS = {TRIPLETS: "distance", NPAIRS: "npair", LIFTED: "lifted"}
