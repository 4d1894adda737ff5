"""What every criterion shares: the miner contract, optimizer groups, the zero loss of an empty batch, and
the opening of every tuple loss (mine, record, handle an empty batch) in one place."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

import batchminer as miners
from utilities.distributed import gather_rows
from utilities.errors import UsageError
from utilities.flags import Flag, options


class Criterion(nn.Module):
    """Base class of all losses.

    Class attributes a loss sets:
      * `REQUIRES_BATCHMINER`: the loss consumes mined tuples (a `TupleLoss`);
      * `ALLOWED_MINING_OPS`: the registry names of the miners it accepts (None: every miner of its kind);
      * `MINER_OUTPUT`: the kind of tuples it consumes (batchminer.base TRIPLETS, NPAIRS or LIFTED); a miner
        of another kind is refused (`check_miner`), so `--loss triplet --batch_mining npair` stops at parse time;
      * `FLAGS`: the command-line flags of its keyword arguments (utilities/flags.py), added to the parser by
        the registry; `name` is its registry key, set by `REGISTRY.register`;
      * `OWN_LR_PARAM`: the constructor keyword of an absolute lr set by the loss's own flag (margin's
        `beta_lr`, softmax's and arcface's `lr`). The reference's S2SD ignored those flags and trained such
        parameters at --lr, which S2SD's `from_opt` path reproduces under --reference_parity. None for
        losses without parameters and for those whose lr is a multiple of --lr (the reference honoured
        proxynca's there).
      * `LEARNS_FROM_PAIRS`: the loss compares the images of a batch with each other (tuples, pair
        similarities), so a batch needs two images of a class and two classes, else every step is degenerate;
        losses against proxies or class weights learn from any batch.

    Constructors take the hyperparameters as keyword arguments with the reference's defaults and the
    runtime facts they need (`n_classes`, `embed_dim`, `feature_dim`) as arguments; nothing reads flags.

    `param_groups()` returns the optimizer groups of the loss's own parameters (proxies, class weights,
    margins), each with its own lr; a loss without parameters returns []. Inside S2SD these groups are kept
    as they are, so a margin beta or a proxy matrix trains at its dedicated learning rate.

    `last_tuple_count` (a tensor, set by each forward) is the number of active tuples/anchors/pairs of the
    last batch; 0 means a degenerate batch, for which the loss is 0 with zero gradient.

    Under several processes (torchrun) the training step calls `global_loss` with this process's rows
    instead of `forward` (utilities/distributed.py).
    """

    REQUIRES_BATCHMINER: bool = False
    ALLOWED_MINING_OPS: Optional[Sequence[str]] = None
    MINER_OUTPUT: str = miners.TRIPLETS
    FLAGS: Tuple[Flag, ...] = ()
    OWN_LR_PARAM: Optional[str] = None
    LEARNS_FROM_PAIRS: bool = False
    name = "criterion"
    batchminer = None

    def __init__(self):
        super().__init__()
        self.last_tuple_count: Optional[torch.Tensor] = None

    @classmethod
    def options_from(cls, opt, **runtime) -> dict:
        """The keyword arguments the CLI passes (criteria.from_opt): one per entry of `FLAGS`."""
        return options(opt, cls.FLAGS)

    @property
    def mining_margin(self) -> Optional[float]:
        """The margin that margin-aware miners (semihard) use when they serve this loss; None if it has none."""
        return None

    def param_groups(self) -> List[dict]:
        return []

    def describe(self) -> str:
        """One line for the run's setup printout."""
        return self.name.upper()

    def miner_names(self) -> List[str]:
        """Registry names of the miners this loss (and its sub-losses) consume."""
        return [self.batchminer.name] if self.batchminer is not None else []

    @staticmethod
    def zero_loss(batch: torch.Tensor) -> torch.Tensor:
        """A loss of exactly 0 that is still connected to the graph, so backward gives zero gradients."""
        return batch.sum() * 0.0

    def global_loss(self, batch: torch.Tensor, labels: torch.Tensor, **features) -> torch.Tensor:
        """The loss of the global batch, from this process's rows of it: the embeddings and labels of all
        processes gathered with gradient (utilities.distributed.gather_rows), then `forward`. A criterion
        that derives batch-level tensors from other inputs (S2SD's heads read the features) overrides it."""
        return self(gather_rows(batch), gather_rows(labels))

    def record(self, count) -> None:
        self.last_tuple_count = torch.as_tensor(count).detach()


def own_group(name: str, parameter: nn.Parameter, lr: float) -> List[dict]:
    """The optimizer group of a loss's own parameter: its own lr, no weight decay (also inside S2SD)."""
    return [{"params": [parameter], "lr": lr, "weight_decay": 0.0, "name": name}]


def allowed_miners(cls) -> List[str]:
    """Registry names of the miners loss class `cls` accepts: those of its kind, limited to ALLOWED_MINING_OPS."""
    return sorted(name for name, miner in miners.REGISTRY.items() if accepts(cls, miner))


def accepts(cls, miner) -> bool:
    """Whether loss class `cls` can consume the tuples of `miner` (a miner class or instance)."""
    return getattr(miner, "OUTPUT", None) == cls.MINER_OUTPUT and (
        cls.ALLOWED_MINING_OPS is None or miner.name in cls.ALLOWED_MINING_OPS)


def check_miner(cls, miner, loss_flag: str = "--loss") -> None:
    """Refuse a miner that loss class `cls` cannot consume, naming the allowed ones: the one check, made at
    parse time (with the flag that names the loss) and when a loss is built."""
    if cls.REQUIRES_BATCHMINER and not accepts(cls, miner):
        raise UsageError(f"--batch_mining {miner.name} cannot serve {loss_flag} {cls.name}; "
                         f"allowed: {', '.join(allowed_miners(cls))}")


class TupleLoss(Criterion):
    """A loss on the tuples its miner returns: forward mines on the detached batch, records the number of
    tuples, returns `empty_loss` (0 with zero gradient) when there is none, and `tuple_loss` otherwise.

    `batchminer`: a miner of the kind the loss consumes; None gives the default of that kind
    (batchminer.DEFAULT_MINERS: `distance` for triplets).
    """

    REQUIRES_BATCHMINER = True
    LEARNS_FROM_PAIRS = True

    def __init__(self, batchminer=None):
        super().__init__()
        if batchminer is None:
            batchminer = miners.select(miners.DEFAULT_MINERS[self.MINER_OUTPUT])
        check_miner(type(self), batchminer)
        self.batchminer = batchminer
        batchminer.bind(self)

    def forward(self, batch: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        tuples = self.batchminer(batch.detach(), labels)
        self.record(len(tuples))
        if len(tuples) == 0:
            return self.empty_loss(batch)
        return self.tuple_loss(batch, labels, tuples)

    def tuple_loss(self, batch: torch.Tensor, labels: torch.Tensor, tuples) -> torch.Tensor:
        """The loss on a non-empty set of mined `tuples`; may `record` a finer count (active tuples)."""
        raise NotImplementedError

    def empty_loss(self, batch: torch.Tensor) -> torch.Tensor:
        return self.zero_loss(batch)

    @staticmethod
    def triplet_embeddings(batch: torch.Tensor, triplets: torch.Tensor):
        """(x_a, x_p, x_n): the embeddings of mined (anchor, positive, negative) rows."""
        return batch[triplets[:, 0]], batch[triplets[:, 1]], batch[triplets[:, 2]]

    @classmethod
    def triplet_distances(cls, batch: torch.Tensor, triplets: torch.Tensor, squared: bool = False):
        """(d_ap, d_an) per mined triplet: ||x_a - x_o||^2 with `squared`, else sqrt(||x_a - x_o||^2 + 1e-8)
        (the 1e-8 keeps the gradient finite for identical points)."""
        a, p, n = cls.triplet_embeddings(batch, triplets)
        d_ap, d_an = (a - p).pow(2).sum(1), (a - n).pow(2).sum(1)
        if squared:
            return d_ap, d_an
        return (d_ap + 1e-8).sqrt(), (d_an + 1e-8).sqrt()


class ClassWeightLoss(Criterion):
    """A loss over cosines to a learnable weight vector per class: W in R^{C x D}, initialised
    U(-1/sqrt(D), 1/sqrt(D)), trained at its own absolute `lr` without weight decay (also inside S2SD).
    `cosines(batch)` = normalise(x) normalise(W)^T, B x C."""

    OWN_LR_PARAM = "lr"

    def __init__(self, n_classes: int, embed_dim: int, lr: float):
        super().__init__()
        bound = 1.0 / math.sqrt(embed_dim)
        self.class_weights = nn.Parameter(torch.empty(n_classes, embed_dim).uniform_(-bound, bound))
        self.lr = lr

    def param_groups(self):
        return own_group(f"{self.name}_weights", self.class_weights, self.lr)

    def cosines(self, batch: torch.Tensor) -> torch.Tensor:
        return F.normalize(batch, dim=1) @ F.normalize(self.class_weights, dim=1).T
