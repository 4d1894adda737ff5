"""The embedding storage that the storage-based batch samplers read (greedy_coreset, d2_coreset,
disthist_batchmatch, fid_batchmatch): one embedding per training image, held on the training device.

Its life in a run (main.py, REFERENCE.md §3.2, §5.2):

* before the first epoch it is filled with the embeddings of all training images under the evaluation
  transforms, the model in eval mode (`fill`); a resumed run loads it from the `last` checkpoint instead;
* after every training step the batch's own embeddings (the step's forward pass, detached: no extra pass)
  replace the stored ones (`update`, the one call the epoch loop makes), unless `update_each_step` is
  False (--data_storage_no_update: frozen between refreshes);
* with `refresh_each_epoch` (--data_idx_full_prec) every epoch after the first starts by embedding the whole
  training set again (`refresh`), as `fill` does.

Momentum (--data_mb_mom m in (0, 1), --data_mb_lr eta; the reference declared both and read them in a
refresh that crashed): each stored embedding e_i keeps a running change v_i, and every write of a new
embedding z_i (per step or in a refresh) does

    v_i <- m v_i + (1 - m) (z_i - e_i),     e_i <- z_i + eta v_i

so the samplers see where an embedding is heading, not only where it was last seen. m <= 0 (the default,
-1): e_i <- z_i. `fill` sets e_i = z_i and v_i = 0.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from utilities.errors import UsageError
from utilities.flags import Bounded, flag


class EmbeddingStorage:
    """`n_samples` x `embed_dim` float32 embeddings on `device`; `update_each_step`, `refresh_each_epoch`,
    `momentum`, `momentum_lr` as in the module docstring (flags in `FLAGS`)."""

    FLAGS = (
        flag("--data_storage_no_update", param="update_each_step", action="store_true",
             convert=lambda frozen, opt: not frozen,
             help="Storage samplers: do not replace stored embeddings with each training step's own."),
        flag("--data_idx_full_prec", param="refresh_each_epoch", action="store_true",
             help="Storage samplers: embed the whole training set again at the start of every epoch after the first."),
        flag("--data_mb_mom", param="momentum", default=-1, type=Bounded(float, ge=0, lt=1, also=(-1,)),
             help="Storage samplers: momentum m of the change of each stored embedding (0 or -1: none; "
                  "datasets/embedding_storage.py)."),
        flag("--data_mb_lr", param="momentum_lr", default=1, type=Bounded(float, gt=0),
             help="Storage samplers: stored = new + this x momentum of the change (with --data_mb_mom > 0)."),
    )

    def __init__(self, n_samples: int, embed_dim: int, device="cpu", *, update_each_step: bool = True,
                 refresh_each_epoch: bool = False, momentum: float = -1, momentum_lr: float = 1):
        if momentum >= 1:
            raise UsageError(f"--data_mb_mom {momentum}: the momentum must be below 1 (<= 0 switches it off)")
        self.embeddings = torch.zeros(n_samples, embed_dim, device=device)
        self.velocity: Optional[torch.Tensor] = torch.zeros_like(self.embeddings) if momentum > 0 else None
        self.update_each_step = update_each_step
        self.refresh_each_epoch = refresh_each_epoch
        self.momentum = momentum
        self.momentum_lr = momentum_lr
        self.filled = False

    @property
    def device(self) -> torch.device:
        return self.embeddings.device

    def _as_tensor(self, embeddings) -> torch.Tensor:
        if isinstance(embeddings, np.ndarray):
            embeddings = torch.from_numpy(embeddings)
        return embeddings.detach().to(self.device, torch.float32)

    def fill(self, embeddings) -> None:
        """Store all N embeddings (N x D, in dataset order) as they are; the momentum starts at 0."""
        embeddings = self._as_tensor(embeddings)
        if embeddings.shape != self.embeddings.shape:
            raise ValueError(f"EmbeddingStorage.fill: expected {tuple(self.embeddings.shape)}, "
                             f"got {tuple(embeddings.shape)}")
        self.embeddings.copy_(embeddings)
        if self.velocity is not None:
            self.velocity.zero_()
        self.filled = True

    def refresh(self, embeddings) -> None:
        """Write all N embeddings (a full re-embedding), with the momentum rule."""
        self._write(torch.arange(len(self.embeddings), device=self.device), self._as_tensor(embeddings))

    def update(self, indices, embeddings: torch.Tensor) -> None:
        """The training step's hook: write the batch's embeddings at its dataset `indices` (a CPU tensor or
        sequence; repeated indices keep their last embedding) unless the storage is frozen. No host
        synchronisation: the repeats are resolved on the CPU, where the indices come from."""
        if not self.update_each_step:
            return
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        unique, inverse = torch.unique(indices, return_inverse=True)
        last = torch.zeros(len(unique), dtype=torch.long).scatter_reduce(0, inverse, torch.arange(len(indices)), "amax",
                                                                         include_self=False)
        self._write(unique.to(self.device, non_blocking=True),
                    self._as_tensor(embeddings)[last.to(self.device, non_blocking=True)])

    def _write(self, indices: torch.Tensor, new: torch.Tensor) -> None:
        if self.velocity is not None:
            velocity = self.momentum * self.velocity[indices] + (1 - self.momentum) * (new - self.embeddings[indices])
            self.velocity[indices] = velocity
            new = new + self.momentum_lr * velocity
        self.embeddings[indices] = new

    def state_dict(self) -> dict:
        """A copy on the CPU (never a view of the live storage: the state taken at an epoch's start must not
        follow the epoch's updates)."""
        return {"embeddings": self.embeddings.to("cpu", copy=True), "filled": self.filled,
                "velocity": None if self.velocity is None else self.velocity.to("cpu", copy=True)}

    def load_state_dict(self, state: dict) -> None:
        self.embeddings.copy_(state["embeddings"])
        if self.velocity is not None:
            self.velocity.copy_(state["velocity"])
        self.filled = state["filled"]
