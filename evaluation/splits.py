"""The one vocabulary of splits inside the code, and the reference's names users see.

Inside the code a split is named by its `datasets.select` key:

* `training`: the training images as the batch sampler feeds them (the loss, its terms, the epoch time);
* `evaluation`: the same images with evaluation transforms (the per-epoch metrics on the training classes);
* `validation`, `testing`: held-out classes (or images), evaluated every epoch.

Users see the reference's names, made here and nowhere else: `display_name` gives "Train" (for both
`training` and `evaluation`), "Val" and "Test", used in CSV file names (`Data_Test_discriminative_e_recall.csv`),
W&B keys ("Test: discriminative: e_recall@1"), best-checkpoint names and the console; summary.json keys take
it in lower case (`test/e_recall@1`, evaluation/logger.py `summary_key`).
"""
from __future__ import annotations

#: Evaluated splits, in the order they are embedded, logged and printed (the reference's Test, Val, Train).
EVALUATED = ("testing", "validation", "evaluation")

_DISPLAY = {"training": "Train", "evaluation": "Train", "validation": "Val", "testing": "Test"}


def display_name(split: str) -> str:
    """The reference's name of `split`: "Train", "Val" or "Test"."""
    return _DISPLAY[split]


def checkpoint_split(evaluated) -> str:
    """The split whose best values keep checkpoints: `validation` when it is evaluated, else `testing`."""
    return "validation" if "validation" in evaluated else "testing"
