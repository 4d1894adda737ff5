"""Per-epoch logging: CSV files per metric group, the console line, W&B, and the summary.

Values are grouped as in the reference: a split (given by its internal name, `testing`, and shown by its
reference name, "Test", evaluation/splits.py), a group (`loss`, `<evaltype>_<metric before '@'>`) and a
segment (the full metric name). Each group is one CSV file, `CSV_Logs/Data_<Split>_<group>.csv`, with an
`epoch` column followed by one column per segment.

Summary keys are `<split>/<metric>` (e.g. `test/e_recall@1`, `train/loss`), with the evaltype inserted,
`test/<evaltype>/<metric>`, for evaltypes other than `discriminative`.

summary.json reports two protocols (named in its `protocols` entry): `best` = for each value separately its
best over all epochs (the reference papers' protocol: R@1 and NMI may come from different epochs, and Test
numbers chosen this way are test-set feedback), `last` = the values of the last epoch. NaN values (a metric
undefined at some epoch) are skipped when picking the best.
"""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Dict, List, Optional

import metrics
from evaluation.splits import display_name
from utilities.errors import UsageError


PROTOCOLS = {
    "best": "per value, its best over all epochs, each value taken separately (the reference papers' protocol)",
    "last": "the values of the last epoch",
}


def metric_group(evaltype: str, metric: str) -> str:
    return f"{evaltype}_{metric.split('@')[0]}"


def summary_key(shown_split: str, evaltype: Optional[str], name: str) -> str:
    """The summary.json key of a value of the split shown as `shown_split` ("Test"): `test/e_recall@1`."""
    if evaltype in (None, "discriminative"):
        return f"{shown_split.lower()}/{name}"
    return f"{shown_split.lower()}/{evaltype}/{name}"


def value_key(split: str, evaltype: Optional[str], name: str) -> str:
    """The summary.json key of a value of the internal split `split` (`testing` -> `test/...`)."""
    return summary_key(display_name(split), evaltype, name)


def lower_is_better(name: str) -> bool:
    """Direction of a logged value: a metric says its own; everything else a run logs (loss terms, S2SD's
    included, epoch times, degenerate steps) goes down. `name` may be a summary key (`train/kl`)."""
    try:
        return not metrics.higher_is_better(name.rsplit("/", 1)[-1])
    except UsageError:  # not a metric name
        return True


class RunLogger:
    """Writes CSV rows, keeps the history of every value, and forwards each epoch to an online logger.
    With `write=False` (the processes other than rank 0 under torchrun) it keeps the history only."""

    def __init__(self, run_dir: str, online=None, write: bool = True):
        self.run_dir = run_dir
        self.csv_dir = os.path.join(run_dir, "CSV_Logs")
        self.write = write
        if write:
            os.makedirs(self.csv_dir, exist_ok=True)
        self.online = online
        self.history: Dict[str, List[float]] = {}
        self._pending_online: Dict[str, float] = {}

    def log_group(self, split: str, group: str, values: Dict[str, float], epoch: int,
                  evaltype: Optional[str] = None) -> None:
        """One row of `values` for the internal split `split` (`training`, `testing`, ...)."""
        shown = display_name(split)
        if self.write:
            path = os.path.join(self.csv_dir, f"Data_{shown}_{group}.csv")
            is_new = not os.path.exists(path)
            with open(path, "a", newline="") as f:
                writer = csv.writer(f)
                if is_new:
                    writer.writerow(["epoch", *values])
                writer.writerow([epoch, *values.values()])
        for name, value in values.items():
            self.history.setdefault(summary_key(shown, evaltype, name), []).append(float(value))
            online_key = f"{shown}: {group}" if name == group else f"{shown}: {group}: {name}"
            self._pending_online[online_key] = float(value)

    def log_metrics(self, split: str, results: Dict[str, Dict[str, float]], epoch: int) -> None:
        """`results` = {evaltype: {metric: value}}, one CSV per (evaltype, metric family)."""
        for evaltype, values in results.items():
            groups: Dict[str, Dict[str, float]] = {}
            for name, value in values.items():
                groups.setdefault(metric_group(evaltype, name), {})[name] = value
            for group, group_values in groups.items():
                self.log_group(split, group, group_values, epoch, evaltype)

    def log_epoch_number(self, epoch: int) -> None:
        """The reference's W&B epoch counter, `Train: epochs`, sent with this epoch's row only (no CSV, no summary)."""
        self._pending_online[f"{display_name('training')}: epochs"] = epoch

    def restore(self, history: Dict[str, List[float]], last_epoch: int) -> None:
        """Continue a run from a checkpoint taken after `last_epoch`: take its history and drop the CSV rows of
        later epochs (those an interrupted epoch had already written)."""
        self.history = {key: list(values) for key, values in history.items()}
        for name in sorted(os.listdir(self.csv_dir)) if self.write else []:
            path = os.path.join(self.csv_dir, name)
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            kept = rows[:1] + [row for row in rows[1:] if int(row[0]) <= last_epoch]
            if len(kept) != len(rows):
                with open(path, "w", newline="") as f:
                    csv.writer(f).writerows(kept)

    def flush_online(self, epoch: int) -> None:
        if self.online is not None and self._pending_online:
            self.online.log(dict(self._pending_online), step=epoch)
        self._pending_online.clear()

    def is_best(self, key: str) -> bool:
        """Whether the newest value of `key` is its best so far (ties count as best)."""
        values = [v for v in self.history.get(key, []) if not math.isnan(v)]
        if not values or math.isnan(self.history[key][-1]):
            return False
        pick = min if lower_is_better(key) else max
        return values[-1] == pick(values)

    def last(self) -> Dict[str, float]:
        return {key: values[-1] for key, values in self.history.items() if values}

    def best(self) -> Dict[str, float]:
        """Per value, its best over epochs, each taken separately (the reference's reporting protocol)."""
        best = {}
        for key, values in self.history.items():
            finite = [v for v in values if not math.isnan(v)]
            if values:
                best[key] = (min if lower_is_better(key) else max)(finite) if finite else float("nan")
        return best

    def write_summary(self, summary: dict) -> None:
        if not self.write:
            return
        with open(os.path.join(self.run_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1, sort_keys=True)
        with open(os.path.join(self.run_dir, "training_summary.txt"), "w") as f:
            f.write(f"Training Time: {summary['train_seconds'] / 60:.2f} min.\n---------------\n")
            for key, value in sorted(summary["best"].items()):
                f.write(f"{key}: best {value:.4f} | last {summary['last'].get(key, float('nan')):.4f}\n")


def epoch_line(epoch: int, n_epochs: int, loss: float, results: Dict[str, Dict[str, Dict[str, float]]],
               train_seconds: float, eval_seconds: float) -> str:
    """`Epoch 3/20 | loss 0.4120 | Test e_recall@1 0.5340 nmi 0.6100 | train 5.1s eval 1.2s`."""
    parts = [f"Epoch {epoch + 1}/{n_epochs}", f"loss {loss:.4f}"]
    for split, per_type in results.items():
        for evaltype, values in per_type.items():
            label = display_name(split) if evaltype == "discriminative" else f"{display_name(split)}[{evaltype}]"
            parts.append(label + " " + " ".join(f"{k} {v:.4f}" for k, v in values.items()))
    parts.append(f"train {train_seconds:.1f}s eval {eval_seconds:.1f}s")
    return " | ".join(parts)
