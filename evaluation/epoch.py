"""A run's evaluation at the end of each epoch: embed and score every evaluated split, log the values, keep
a checkpoint of the model for the best value of each --storage_metrics; and the test embedding at the end.

The checkpoints follow the reference: one per (evaltype, storage metric), judged on the validation split when
there is one and on the test split otherwise, named `checkpoint_<Split>_<evaltype>_<metric>.pth.tar` and
holding the model, the epoch, the options and the value (the model only: the S2SD heads and the optimizer
are in the `last` checkpoint, and a best checkpoint serves evaluation and inference).
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

import metrics
from evaluation import embed_and_score, embed_split
from evaluation.logger import RunLogger, value_key
from evaluation.splits import EVALUATED, checkpoint_split, display_name
from utilities.checkpoint import save_atomic
from utilities.run_folder import jsonable_options

#: {split: {evaltype: {metric: value}}}
Results = Dict[str, Dict[str, Dict[str, float]]]
#: (N x D embeddings of the first evaltype, N labels)
Embedding = Tuple[np.ndarray, np.ndarray]


def best_checkpoint_name(split: str, evaltype: str, metric: str) -> str:
    """The reference's file name: checkpoint_<Split>_<evaltype>_<metric>.pth.tar (Split as shown: "Test")."""
    return f"checkpoint_{display_name(split)}_{evaltype}_{metric}.pth.tar"


def evaluate_epoch(model, loaders: Mapping, device, opt, logger: RunLogger, epoch: int, n_train_classes: int,
                   precision=None, evaluate_training: bool = True) -> Tuple[Results, Optional[Embedding]]:
    """Embed and score each evaluated split in `loaders` (testing, validation, and evaluation when
    `evaluate_training`: --train_eval_every) under `precision` and log its values; returns the results and
    the test split's embedding on the host (None without a test split)."""
    results, test_embedding = {}, None
    for split in EVALUATED:
        if split in loaders and (split != "evaluation" or evaluate_training):
            results[split], features, labels = embed_and_score(
                model, loaders[split], device, opt, desc=f"Embedding {display_name(split)} Data",
                n_train_classes=n_train_classes, precision=precision)
            logger.log_metrics(split, results[split], epoch)
            if split == "testing":
                test_embedding = (metrics.as_numpy(features[opt.evaltypes[0]]), labels)
    return results, test_embedding


def keep_best(logger: RunLogger, results: Results, run_dir: str, opt, *, model, epoch: int, writer=None) -> None:
    """Write the best-value checkpoints whose value is a new best this epoch (ties count as best), through
    `writer` (utilities/async_checkpoint.CheckpointWriter, in the background) or at once."""
    save = writer.save if writer is not None else save_atomic
    split = checkpoint_split(results)
    for evaltype in opt.evaltypes:
        for metric in opt.storage_metrics:
            if logger.is_best(value_key(split, evaltype, metric)):
                save({"model": model.state_dict(), "epoch": epoch, "opt": jsonable_options(opt), "metric": metric,
                      "value": results[split][evaltype][metric]},
                     os.path.join(run_dir, best_checkpoint_name(split, evaltype, metric)))


def final_test_embedding(model, loaders: Mapping, device, opt, last: Optional[Embedding],
                         precision=None) -> Optional[Embedding]:
    """The test embedding after the last epoch: the one the last evaluation made, or, when this process
    evaluated no epoch (a resumed run that had finished), a fresh one. None without a test split."""
    if last is not None or "testing" not in loaders:
        return last
    features, labels, _, _ = embed_split(model, loaders["testing"], device, opt, "Embedding Test Data", precision)
    return features[opt.evaltypes[0]], labels
