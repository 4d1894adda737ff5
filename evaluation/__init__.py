"""Embed the evaluated splits with the model and hand the features to `metrics`; per epoch, log the values
and keep the best checkpoints (evaluation/epoch.py).

Evaluated splits, named by their `datasets.select` keys (evaluation/splits.py):

* `testing`, or `testing_query` against `testing_gallery` when the dataset has a query/gallery protocol
  (In-Shop): queries are retrieved from the gallery only, same label = same item;
* `validation`, or `validation_query` / `validation_gallery`;
* `evaluation` (the training images with evaluation transforms), unless --no_train_metrics.

Without a gallery every sample is a query against all the others of its split.
"""
from __future__ import annotations

import os
import warnings
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

import metrics
from evaluation import evaltypes as evaltype_parsing
from evaluation.splits import EVALUATED
from utilities import distributed
from utilities.precision import Precision


def evaluated_sets(splits: Mapping, include_train: bool = True) -> Dict[str, Dict[str, object]]:
    """{"testing": {"query": dataset[, "gallery": dataset]}, ...} for the evaluated splits present in `splits`."""
    sets = {}
    for key in EVALUATED:
        if key == "evaluation" and not include_train:
            continue
        query, gallery = splits.get(f"{key}_query"), splits.get(f"{key}_gallery")
        if (query is None) != (gallery is None):
            raise ValueError(f"the dataset returned only one of {key}_query and {key}_gallery")
        if query is not None:
            sets[key] = {"query": query, "gallery": gallery}
        elif key in splits:
            sets[key] = {"query": splits[key]}
    return sets


@torch.inference_mode()
def embed(model, loader, device, keys: Sequence[str], desc: str = "Embedding Data", progress: Optional[bool] = None,
          precision=None, on_device: bool = False) -> Tuple[Dict[str, object], np.ndarray]:
    """Run the model in eval mode over `loader`; returns ({output key: N x D float32}, labels N) of the
    whole split, also under several processes, where each embeds its shard.
    `progress`: show a progress bar (None: only on a terminal).

    The backbone runs under `precision`'s autocast (utilities/precision.py; its outputs are fp32 whatever
    it is). With `on_device` the features stay on `device` as tensors (no copy, no host synchronisation
    per batch), else they are numpy arrays.
    """
    precision = precision or Precision(torch.device(device))
    was_training = model.training
    model.eval()
    outputs = {key: [] for key in keys}
    labels = []
    if not distributed.current().is_main:
        progress = False
    for batch_labels, images, _ in tqdm(loader, desc=desc, leave=False, disable=None if progress is None else not progress):
        with precision.autocast():
            out = model(precision.prepare_images(images.to(device, non_blocking=True)))
        for key in keys:
            outputs[key].append(out[key].float() if on_device else out[key].float().cpu())
        labels.append(batch_labels.cpu())
    model.train(was_training)
    # Under several processes the loader holds this process's share of the split (datasets/loading.py);
    # the shares are gathered in rank order, which is the split's order.
    features = {key: distributed.gather_uneven_rows(torch.cat(x) if x else None) for key, x in outputs.items()}
    labels = distributed.gather_uneven_rows(torch.cat(labels) if labels else None)
    return {key: x if on_device else x.numpy() for key, x in features.items()}, labels.numpy()


def metric_backend(opt, device) -> Tuple[str, object]:
    """(backend, device) for `metrics.compute_metrics`: on CUDA the metrics run on the GPU (faiss-gpu's k-means
    when that build is installed, else torch), on the CPU with faiss (CPU). --evaluate_on_gpu is the CUDA
    default; on a CPU run it warns."""
    if torch.device(device).type == "cuda":
        return metrics.gpu_backend(), device
    if opt.evaluate_on_gpu:
        warnings.warn("--evaluate_on_gpu: the run is on the CPU; computing the metrics with faiss on the CPU")
    return "faiss", None


def embed_split(model, loaders, device, opt, desc: str, precision=None, on_device: bool = False):
    """Embed one evaluated split: ({evaltype: query features}, query labels, {evaltype: gallery features},
    gallery labels or None). `loaders` is a DataLoader or {"query": loader[, "gallery": loader]}. With
    `on_device` the features stay on `device` (tensors), else they are numpy arrays."""
    if not isinstance(loaders, Mapping):
        loaders = {"query": loaders}
    keys = evaltype_parsing.output_keys(opt.evaltypes)
    query, query_labels = embed(model, loaders["query"], device, keys, desc=desc, precision=precision,
                                on_device=on_device)
    gallery, gallery_labels = ({}, None)
    if "gallery" in loaders:
        gallery, gallery_labels = embed(model, loaders["gallery"], device, keys, desc=desc.replace(" Data", " Gallery"),
                                        precision=precision, on_device=on_device)
    query_features = evaltype_parsing.features(opt.evaltypes, query)
    gallery_features = evaltype_parsing.features(opt.evaltypes, gallery) if gallery else {}
    return query_features, query_labels, gallery_features, gallery_labels


def embed_and_score(model, loaders, device, opt, desc: str, n_train_classes: Optional[int] = None, precision=None):
    """(metrics {evaltype: {metric: value}}, query features {evaltype: N x D}, query labels N) for one split.

    `n_train_classes` is the k of the clustering metrics with --kmeans_train_classes (or --reference_parity).
    When the metrics run on the GPU, the features never leave it. Under several processes every one embeds
    its shard and gets the whole split's features, and rank 0 alone computes the metrics (the others get {})."""
    backend, metric_device = metric_backend(opt, device)
    query_features, query_labels, gallery_features, gallery_labels = embed_split(
        model, loaders, device, opt, desc, precision, on_device=metric_device is not None)
    train_classes_k = opt.kmeans_train_classes or opt.reference_parity
    if train_classes_k and n_train_classes is None:
        raise ValueError("--kmeans_train_classes: pass n_train_classes, the number of training classes")
    if not distributed.current().is_main:  # under several processes the metrics run once, on rank 0
        return {}, query_features, query_labels
    options = dict(n_clusters=n_train_classes if train_classes_k else None, seed=opt.seed,
                   threads=max(1, min(opt.kernels, os.cpu_count() or 1)), backend=backend, device=metric_device)
    results = {
        name: metrics.compute_metrics(x, query_labels, opt.evaluation_metrics, gallery=gallery_features.get(name),
                                      gallery_labels=gallery_labels, **options)
        for name, x in query_features.items()
    }
    return results, query_features, query_labels


def evaluate_split(model, loaders, device, opt, desc: str,
                   n_train_classes: Optional[int] = None) -> Dict[str, Dict[str, float]]:
    """{evaltype: {metric: value}} for one split, with `opt.evaluation_metrics`."""
    return embed_and_score(model, loaders, device, opt, desc, n_train_classes)[0]
