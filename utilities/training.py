"""One training epoch: batches -> backbone -> criterion -> backward -> optimizer step."""
from __future__ import annotations

import math
import time
from typing import Dict

import torch
from tqdm import tqdm

from utilities.errors import TrainingDiverged


def train_one_epoch(model, criterion, optimizer, loader, device, epoch: int) -> Dict[str, float]:
    """Train for one pass of the batch sampler; returns the mean loss, the mean of each logged loss term,
    the number of degenerate steps (no active tuple) and the seconds taken.

    The only host synchronisation per step is the loss value, read once for the progress bar and the NaN
    check; loss terms are summed on the device and read at the end of the epoch.
    """
    model.train()
    criterion.train()
    start = time.time()
    loss_sum, steps = 0.0, 0
    term_sums: Dict[str, torch.Tensor] = {}
    degenerate = torch.zeros((), dtype=torch.long, device=device)
    bar = tqdm(loader, desc=f"Epoch {epoch + 1} Training", leave=False, disable=None)  # a bar only on a terminal
    for labels, images, _ in bar:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        out = model(images)
        loss = criterion(out["embeds"], labels, avg_batch_features=out["avg_features"], batch_features=out["features"])
        value = loss.item()
        terms = getattr(criterion, "last_terms", {})
        if not math.isfinite(value):
            detail = ", ".join(f"{k} {float(v):.4g}" for k, v in terms.items())
            raise TrainingDiverged(f"loss became {value} at epoch {epoch + 1}, step {steps + 1}" + (f" ({detail})" if detail else ""))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        loss_sum += value
        steps += 1
        for key, term in terms.items():
            term_sums[key] = term_sums.get(key, 0.0) + term
        if criterion.last_tuple_count is not None:
            degenerate += (criterion.last_tuple_count == 0).long()
        bar.set_postfix(loss=f"{loss_sum / steps:.4f}", refresh=False)
    stats = {"loss": loss_sum / max(steps, 1)}
    stats.update({k: float(v) / steps for k, v in term_sums.items()})
    stats["degenerate_steps"] = int(degenerate)
    stats["seconds"] = time.time() - start
    return stats
