"""Losses, S2SD among them: `nn.Module`s called as `loss(embeds, labels, **features)`.

Build one in Python with its keyword arguments, `criteria.MarginLoss(n_classes=100, margin=0.2)`, or by
registry name, `criteria.select("margin", n_classes=100)`; hyperparameters default to the reference's values
and the runtime facts a loss needs (`n_classes`, `embed_dim`, `feature_dim`) are arguments
(docs/python_api.md). The CLI builds `--loss` with `from_opt(name, opt, ...)` from the flags each loss
declares next to its class (`FLAGS`, utilities/flags.py). A loss that needs tuples gets a miner: the one
passed in, `--batch_mining` on the CLI, or the default of its kind; a miner the loss does not allow is
refused with the allowed names (criteria.base.check_miner).
"""
from __future__ import annotations

import inspect
from typing import List, Optional, Tuple

import batchminer as miners
from utilities.errors import UsageError
from utilities.registry import ComponentRegistry

REGISTRY: ComponentRegistry = ComponentRegistry("loss", "--loss")
#: Facts of the run that size a loss; each loss takes those its constructor names.
RUNTIME_FACTS = ("n_classes", "embed_dim", "feature_dim")


def requires_batchminer(name: str) -> bool:
    return REGISTRY.lookup(name).REQUIRES_BATCHMINER


def _sub_loss(name: str, flag: str):
    if name not in REGISTRY or name == "s2sd":
        choices = ", ".join(sorted(n for n in REGISTRY if n != "s2sd"))
        raise UsageError(f"{flag}: unknown loss '{name}'; choose one of: {choices}")
    return REGISTRY[name]


def trained_losses(opt) -> List[Tuple[str, type]]:
    """(flag, loss class) of each loss a run trains: --loss, or S2SD's --loss_s2sd_source and --loss_s2sd_target."""
    if REGISTRY.lookup(opt.loss) is S2SD:
        flags = [("--loss_s2sd_source", opt.loss_s2sd_source), ("--loss_s2sd_target", opt.loss_s2sd_target)]
        return [(flag, _sub_loss(name, flag)) for flag, name in flags]
    return [("--loss", REGISTRY[opt.loss])]


def check_loss_and_miner(opt) -> None:
    """Validate `--loss` (and S2SD's source/target losses) against the registry and `--batch_mining`."""
    miner = miners.REGISTRY.lookup(opt.batch_mining)
    for flag, cls in trained_losses(opt):
        check_miner(cls, miner, flag)


def check_batch_composition(opt) -> None:
    """Refuse a batch that gives a pair-based loss (`LEARNS_FROM_PAIRS`) nothing to learn from at any step:
    one image per class (no positive pair) or one class per batch (no negative)."""
    for flag, cls in trained_losses(opt):
        if not cls.LEARNS_FROM_PAIRS:
            continue
        if opt.samples_per_class < 2:
            raise UsageError(f"--samples_per_class {opt.samples_per_class}: {flag} {cls.name} learns from pairs of "
                             "images of the same class in a batch, and there would be none in any step; use "
                             "--samples_per_class 2 or more")
        if opt.bs // opt.samples_per_class < 2:
            raise UsageError(f"--bs {opt.bs} with --samples_per_class {opt.samples_per_class} puts one class in each "
                             f"batch: {flag} {cls.name} needs images of two classes in a batch; use --bs of at least "
                             f"{2 * opt.samples_per_class}")


def _construct(cls, kwargs: dict, runtime: dict):
    """`cls(**kwargs)` plus the runtime facts its constructor takes; a missing one is named."""
    takes = inspect.signature(cls).parameters
    for fact, value in runtime.items():
        if fact in takes:
            if value is None and takes[fact].default is inspect.Parameter.empty:
                raise TypeError(f"loss '{cls.name}' needs {fact}")
            if value is not None:
                kwargs[fact] = value
    return cls(**kwargs)


def from_opt(name: str, opt, batchminer=None, *, n_classes: Optional[int] = None, embed_dim: Optional[int] = None,
             feature_dim: Optional[int] = None):
    """The CLI's loss: class `name` with the keyword arguments its flags give in the parsed namespace `opt`
    (`Criterion.options_from`), the miner `batchminer` or else `--batch_mining`, and the runtime facts;
    `embed_dim` defaults to --embed_dim (S2SD's target branches pass their own widths)."""
    cls = REGISTRY.lookup(name)
    runtime = dict(n_classes=n_classes, embed_dim=opt.embed_dim if embed_dim is None else embed_dim,
                   feature_dim=feature_dim)
    kwargs = cls.options_from(opt, **runtime)
    if cls.REQUIRES_BATCHMINER:
        kwargs["batchminer"] = miners.from_opt(opt.batch_mining, opt) if batchminer is None else batchminer
    return _construct(cls, kwargs, runtime)


def select(name: str, opt=None, batchminer=None, *, n_classes: Optional[int] = None, embed_dim: Optional[int] = None,
           feature_dim: Optional[int] = None, **hyperparameters):
    """Loss `name`: from the parsed flags `opt` (the CLI path, `from_opt`), or else from `hyperparameters`
    with the reference's defaults for the rest. A tuple loss uses `batchminer` when given."""
    if opt is not None:
        if hyperparameters:
            raise TypeError("criteria.select: pass the parsed flags or keyword arguments, not both")
        return from_opt(name, opt, batchminer, n_classes=n_classes, embed_dim=embed_dim, feature_dim=feature_dim)
    cls = REGISTRY.lookup(name)
    if batchminer is not None:
        hyperparameters["batchminer"] = batchminer
    return _construct(cls, hyperparameters, dict(n_classes=n_classes, embed_dim=embed_dim, feature_dim=feature_dim))


# Importing the loss modules fills REGISTRY, in the order of their flags in --help.
from criteria.base import Criterion, TupleLoss, allowed_miners, check_miner  # noqa: E402,F401
from criteria.contrastive import ContrastiveLoss  # noqa: E402,F401
from criteria.triplet import TripletLoss  # noqa: E402,F401
from criteria.margin import MarginLoss  # noqa: E402,F401
from criteria.proxynca import ProxyNCALoss  # noqa: E402,F401
from criteria.npair import NPairLoss  # noqa: E402,F401
from criteria.angular import AngularLoss  # noqa: E402,F401
from criteria.multisimilarity import MultiSimilarityLoss  # noqa: E402,F401
from criteria.lifted import LiftedLoss  # noqa: E402,F401
from criteria.quadruplet import QuadrupletLoss  # noqa: E402,F401
from criteria.softtriplet import SoftTripleLoss  # noqa: E402,F401
from criteria.softmax import NormSoftmaxLoss  # noqa: E402,F401
from criteria.histogram import HistogramLoss  # noqa: E402,F401
from criteria.snr import SNRLoss  # noqa: E402,F401
from criteria.arcface import ArcFaceLoss  # noqa: E402,F401
from criteria.proxyanchor import ProxyAnchorLoss  # noqa: E402,F401
from criteria.circle import CircleLoss  # noqa: E402,F401
from criteria.s2sd import S2SD  # noqa: E402,F401
