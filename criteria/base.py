"""What every criterion shares: the miner contract, optimizer groups, and the zero loss of an empty batch."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn


class Criterion(nn.Module):
    """Base class of all losses.

    Class attributes a loss sets:
      * `REQUIRES_BATCHMINER`: the loss consumes mined tuples and needs `--batch_mining`;
      * `ALLOWED_MINING_OPS`: the registry names of the miners it accepts (None: every miner of its kind);
      * `MINER_OUTPUT`: the kind of tuples it consumes (batchminer.base TRIPLETS, NPAIRS or LIFTED); a miner
        of another kind is refused, so `--loss triplet --batch_mining npair` stops at parse time.

    `param_groups()` returns the optimizer groups of the loss's own parameters (proxies, class weights,
    margins), each with its own lr; a loss without parameters returns []. Inside S2SD these groups are kept
    as they are, so a margin beta or a proxy matrix trains at its dedicated learning rate.

    `last_tuple_count` (a tensor, set by each forward) is the number of active tuples/anchors/pairs of the
    last batch; 0 means a degenerate batch, for which the loss is 0 with zero gradient.
    """

    REQUIRES_BATCHMINER: bool = False
    ALLOWED_MINING_OPS: Optional[Sequence[str]] = None
    MINER_OUTPUT: str = "triplets"

    def __init__(self, opt, batchminer=None, embed_dim: Optional[int] = None):
        super().__init__()
        self.batchminer = batchminer
        self.embed_dim = opt.embed_dim if embed_dim is None else embed_dim
        self.last_tuple_count: Optional[torch.Tensor] = None

    @property
    def mining_margin(self) -> Optional[float]:
        """The margin that margin-aware miners (semihard) use when they serve this loss; None if it has none."""
        return None

    def param_groups(self) -> List[dict]:
        return []

    @staticmethod
    def zero_loss(batch: torch.Tensor) -> torch.Tensor:
        """A loss of exactly 0 that is still connected to the graph, so backward gives zero gradients."""
        return batch.sum() * 0.0

    @staticmethod
    def triplet_embeddings(batch: torch.Tensor, triplets: torch.Tensor):
        """(x_a, x_p, x_n): the embeddings of mined (anchor, positive, negative) rows."""
        return batch[triplets[:, 0]], batch[triplets[:, 1]], batch[triplets[:, 2]]

    def record(self, count) -> None:
        self.last_tuple_count = torch.as_tensor(count).detach()
