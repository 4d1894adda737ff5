"""Pairwise geometry shared by the losses (criteria/) and the miners (batchminer/).

Neither package owns it, so neither imports the other for it: batchminer never imports criteria.
"""
from __future__ import annotations

import torch


def squared_euclidean(x: torch.Tensor, y: torch.Tensor = None) -> torch.Tensor:
    """D2_ij = ||x_i - y_j||^2, computed as ||x||^2 + ||y||^2 - 2 x.y and clamped at 0."""
    y = x if y is None else y
    d2 = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return d2.clamp_min(0.0)


def euclidean(x: torch.Tensor, y: torch.Tensor = None, eps: float = 1e-8) -> torch.Tensor:
    """D_ij = sqrt(||x_i - y_j||^2 + eps); eps keeps the gradient finite for identical points."""
    return (squared_euclidean(x, y) + eps).sqrt()


def same_label_masks(labels: torch.Tensor):
    """(positives, negatives) B x B boolean masks: same label without the diagonal, and different label."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same
