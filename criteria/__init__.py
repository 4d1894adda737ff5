"""Losses: `select(name, opt, batchminer=None)` builds one from the registry.

Each module registers its class with `@REGISTRY.register(name)`. A loss that needs tuples gets a miner:
the one passed in, or a fresh `batchminer.select(opt.batch_mining, opt)`; a miner the loss does not
allow is refused with the allowed names. Miners are built only for losses that use them.
"""
from __future__ import annotations

from typing import Optional

from utilities.errors import UsageError
from utilities.registry import Registry

REGISTRY: Registry = Registry("loss", "--loss")


def allowed_miners(cls) -> list:
    """Registry names of the miners loss class `cls` accepts: those of its kind, limited to ALLOWED_MINING_OPS."""
    import batchminer

    return sorted(name for name, miner in batchminer.REGISTRY.items()
                  if miner.OUTPUT == cls.MINER_OUTPUT
                  and (cls.ALLOWED_MINING_OPS is None or name in cls.ALLOWED_MINING_OPS))


def _accepts(cls, miner) -> bool:
    return getattr(miner, "OUTPUT", None) == cls.MINER_OUTPUT and (
        cls.ALLOWED_MINING_OPS is None or miner.name in cls.ALLOWED_MINING_OPS)


def _check_miner(loss_name: str, miner_name: str, flag: str) -> None:
    import batchminer

    cls = REGISTRY.lookup(loss_name) if flag == "--loss" else _lookup_sub(loss_name, flag)
    if cls.REQUIRES_BATCHMINER and not _accepts(cls, batchminer.REGISTRY[miner_name]):
        raise UsageError(
            f"--batch_mining {miner_name} cannot serve {flag} {loss_name}; allowed: {', '.join(allowed_miners(cls))}"
        )


def _lookup_sub(name: str, flag: str):
    if name not in REGISTRY or name == "s2sd":
        choices = ", ".join(sorted(n for n in REGISTRY if n != "s2sd"))
        raise UsageError(f"{flag}: unknown loss '{name}'; choose one of: {choices}")
    return REGISTRY[name]


def check_loss_and_miner(opt) -> None:
    """Validate `--loss` (and S2SD's source/target losses) against the registry and `--batch_mining`."""
    import batchminer

    batchminer.REGISTRY.lookup(opt.batch_mining)
    REGISTRY.lookup(opt.loss)
    if opt.loss == "s2sd":
        for flag, name in (("--loss_s2sd_source", opt.loss_s2sd_source), ("--loss_s2sd_target", opt.loss_s2sd_target)):
            _check_miner(name, opt.batch_mining, flag)
    else:
        _check_miner(opt.loss, opt.batch_mining, "--loss")


def requires_batchminer(name: str) -> bool:
    return REGISTRY.lookup(name).REQUIRES_BATCHMINER


def select(name: str, opt, batchminer=None, embed_dim: Optional[int] = None):
    """Build loss `name`; `embed_dim` overrides `opt.embed_dim` (S2SD's target branches use their own width)."""
    import batchminer as miners

    cls = REGISTRY.lookup(name)
    if cls.REQUIRES_BATCHMINER:
        if batchminer is None:
            batchminer = miners.select(opt.batch_mining, opt)
        if not _accepts(cls, batchminer):
            raise UsageError(
                f"--batch_mining {batchminer.name} cannot serve loss {name}; allowed: {', '.join(allowed_miners(cls))}"
            )
    else:
        batchminer = None
    criterion = cls(opt, batchminer=batchminer, embed_dim=embed_dim)
    if batchminer is not None:
        batchminer.bind(criterion)
    return criterion


# Importing the loss modules fills REGISTRY.
from criteria import contrastive, margin, multisimilarity, s2sd, triplet  # noqa: E402,F401
from criteria import (  # noqa: E402,F401
    angular, arcface, circle, histogram, lifted, npair, proxyanchor, proxynca, quadruplet, snr, softmax, softtriplet,
)
