"""Embed a split with the model and hand the features to `metrics`."""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

import metrics

#: `--evaltypes` name -> key of the model's output dict.
OUTPUT_KEYS = {"discriminative": "embeds"}


def output_key(evaltype: str) -> str:
    return OUTPUT_KEYS.get(evaltype, evaltype)


@torch.no_grad()
def embed(model, loader, device, evaltypes: Sequence[str], desc: str = "Embedding Data") -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Run the model in eval mode over `loader`; returns ({evaltype: N x D float32}, labels N)."""
    was_training = model.training
    model.eval()
    features = {e: [] for e in evaltypes}
    labels = []
    for batch_labels, images, _ in tqdm(loader, desc=desc, leave=False):
        out = model(images.to(device, non_blocking=True))
        for e in evaltypes:
            features[e].append(out[output_key(e)].float().cpu())
        labels.append(batch_labels)
    model.train(was_training)
    return ({e: torch.cat(f).numpy() for e, f in features.items()}, torch.cat(labels).numpy())


def evaluate_split(model, loader, device, opt, desc: str) -> Dict[str, Dict[str, float]]:
    """{evaltype: {metric: value}} for one split, with `opt.evaluation_metrics`."""
    return embed_and_score(model, loader, device, opt, desc)[0]


def embed_and_score(model, loader, device, opt, desc: str):
    """(metrics {evaltype: {metric: value}}, features {evaltype: N x D}, labels N) for one split."""
    features, labels = embed(model, loader, device, opt.evaltypes, desc=desc)
    results = {
        e: metrics.compute_metrics(x, labels, opt.evaluation_metrics, seed=opt.seed, threads=max(1, opt.kernels))
        for e, x in features.items()
    }
    return results, features, labels
