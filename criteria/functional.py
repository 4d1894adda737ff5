"""Reductions shared by the losses, safe on empty sets (finite value, zero gradient)."""
from __future__ import annotations

import torch


def masked_logsumexp(z: torch.Tensor, mask: torch.Tensor, add_one: bool = False) -> torch.Tensor:
    """Row-wise log(sum_{j in mask_i} exp(z_ij)), or log(1 + sum ...) with `add_one`.

    A row with an empty mask gives 0 (as if its sum were 1) and no gradient, instead of -inf and NaN.
    """
    z = z.masked_fill(~mask, float("-inf"))
    if add_one:  # an empty row is logsumexp([0, -inf, ...]) = 0 already
        return torch.logsumexp(torch.cat([torch.zeros_like(z[:, :1]), z], dim=1), dim=1)
    nonempty = mask.any(1)
    z = z.masked_fill(~nonempty[:, None], 0.0)
    return torch.logsumexp(z, dim=1).masked_fill(~nonempty, 0.0)


def mean_over(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the entries where `valid` holds; 0 with zero gradient when none does."""
    count = valid.sum()
    return torch.where(valid, values, torch.zeros_like(values)).sum() / count.clamp_min(1)
