"""Mean +- std tables over seeds from run folders, with no W&B access (the engine of Result_Evaluations.py).

A run folder is any folder with `parameters.json` and `CSV_Logs/` (what main.py writes, also for a run that
was killed or is still going). Runs are grouped by (dataset, --group); each group's seeds give one row.

Each value is read from the CSV logs (`Data_<Split>_<group>.csv`) and named as in summary.json:
`test/e_recall@1`, `train/loss`, `test/<evaltype>/<metric>` for evaltypes other than `discriminative`. Two
protocols:

* `last`: the value at the last logged epoch of each run;
* `max`: each value's best over epochs, taken separately per value (so R@1 and NMI may come from different
  epochs), the protocol of the reference's Result_Evaluations.py and of the published tables; "best" is the
  minimum for losses, times and lower-is-better metrics.

Over the runs of a group: mean and standard deviation with ddof = 0 (numpy's default, as the reference).
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from utilities.errors import UsageError
from evaluation.logger import lower_is_better, summary_key

PROTOCOLS = {"last": "Last epoch", "max": "Maximum over epochs (each value separately)"}


@dataclass
class Run:
    path: str
    dataset: str
    group: str
    seed: int
    epochs: int
    #: value name -> per-epoch values in epoch order
    values: Dict[str, np.ndarray] = field(default_factory=dict)
    lower: Dict[str, bool] = field(default_factory=dict)

    def result(self, name: str, protocol: str) -> float:
        series = self.values.get(name)
        if series is None or not len(series):
            return float("nan")
        if protocol == "last":
            return float(series[-1])
        return float(np.nanmin(series) if self.lower[name] else np.nanmax(series))


def find_runs(paths: Sequence[str]) -> List[str]:
    """Run folders at or below each path, sorted."""
    found = set()
    for path in paths:
        if not os.path.isdir(path):
            raise UsageError(f"--runs: no such folder: {path}")
        for folder, subfolders, files in os.walk(path):
            if "parameters.json" in files and "CSV_Logs" in subfolders:
                found.add(folder)
                subfolders[:] = []
    return sorted(found)


def _name(split: str, group: str, segment: str) -> str:
    family = segment.split("@")[0]
    evaltype = group[: -len(family) - 1] if group.endswith("_" + family) and group != family else None
    return summary_key(split, evaltype, segment)


def read_run(path: str) -> Run:
    with open(os.path.join(path, "parameters.json")) as f:
        options = json.load(f)
    run = Run(path=path, dataset=options.get("dataset", "?"), group=options.get("group", "?"),
              seed=options.get("seed", -1), epochs=0)
    csv_dir = os.path.join(path, "CSV_Logs")
    for file_name in sorted(os.listdir(csv_dir)):
        if not (file_name.startswith("Data_") and file_name.endswith(".csv")):
            continue
        split, _, group = file_name[len("Data_"):-len(".csv")].partition("_")
        with open(os.path.join(csv_dir, file_name), newline="") as f:
            rows = list(csv.reader(f))
        if len(rows) < 2:
            continue
        body = np.asarray(rows[1:], dtype=np.float64)
        order = np.argsort(body[:, 0], kind="stable")
        run.epochs = max(run.epochs, len(body))
        for column, segment in enumerate(rows[0][1:], start=1):
            name = _name(split, group, segment)
            run.values[name] = body[order, column]
            run.lower[name] = lower_is_better(segment)
    return run


@dataclass
class Row:
    dataset: str
    group: str
    runs: List[Run]

    @property
    def seeds(self) -> List[int]:
        return sorted(r.seed for r in self.runs)

    def stats(self, name: str, protocol: str):
        """(mean, std, number of runs with a value)."""
        values = np.asarray([r.result(name, protocol) for r in self.runs])
        values = values[np.isfinite(values)]
        if not len(values):
            return float("nan"), float("nan"), 0
        return float(values.mean()), float(values.std()), len(values)


def group_runs(runs: Sequence[Run]) -> List[Row]:
    groups: Dict[tuple, List[Run]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.group), []).append(run)
    return [Row(dataset, group, members) for (dataset, group), members in sorted(groups.items())]


def default_names(runs: Sequence[Run]) -> List[str]:
    """Every test value the runs logged, in first-seen order (validation values when there is no test)."""
    names: List[str] = []
    for prefix in ("test/", "val/"):
        for run in runs:
            names.extend(n for n in run.values if n.startswith(prefix) and n not in names)
        if names:
            break
    return names


def _cell(mean: float, std: float, n: int, n_runs: int, scale: float, digits: int) -> str:
    if n == 0:
        return "n/a"
    text = f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"
    return text if n == n_runs else f"{text} ({n}/{n_runs} runs)"


def markdown(rows: Sequence[Row], names: Sequence[str], scale: float, digits: int) -> str:
    lines = []
    for protocol, title in PROTOCOLS.items():
        lines += [f"## {title}", "", "| dataset | group | runs | seeds | epochs | " + " | ".join(names) + " |",
                  "| --- " * (5 + len(names)) + "|"]
        for row in rows:
            epochs = sorted({r.epochs for r in row.runs})
            cells = [_cell(*row.stats(name, protocol), len(row.runs), scale, digits) for name in names]
            lines.append(f"| {row.dataset} | {row.group} | {len(row.runs)} | {' '.join(map(str, row.seeds))} | "
                         f"{'-'.join(map(str, [epochs[0], epochs[-1]] if len(epochs) > 1 else epochs))} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_csv(path: str, rows: Sequence[Row], names: Sequence[str], scale: float) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["protocol", "dataset", "group", "runs", "seeds"]
                        + [f"{n} {stat}" for n in names for stat in ("mean", "std")])
        for protocol in PROTOCOLS:
            for row in rows:
                values = []
                for name in names:
                    mean, std, _ = row.stats(name, protocol)
                    values += [mean * scale, std * scale]
                writer.writerow([protocol, row.dataset, row.group, len(row.runs), " ".join(map(str, row.seeds)),
                                 *values])


def truncate(run: Run, epochs: int) -> Run:
    """The run as it stood after its first `epochs` epochs. With a learning rate that does not depend on
    --n_epochs (no schedule, or milestones past the end), that is the run a shorter --n_epochs would have made."""
    run.values = {name: series[:epochs] for name, series in run.values.items()}
    run.epochs = min(run.epochs, epochs)
    return run


def build(paths: Sequence[str], names: Optional[Sequence[str]] = None, min_epochs: int = 0,
          at_epoch: Optional[int] = None):
    """(rows, value names, warnings) for the runs under `paths`, each cut after `at_epoch` epochs if given."""
    folders = find_runs(paths)
    if not folders:
        raise UsageError(f"--runs: no run folders (with parameters.json and CSV_Logs/) under {' '.join(paths)}")
    if at_epoch is not None and at_epoch < 1:
        raise UsageError(f"--at_epoch must be at least 1, got {at_epoch}")
    runs, notes = [], []
    for folder in folders:
        run = read_run(folder)
        if at_epoch is not None:
            run = truncate(run, at_epoch)
        if run.epochs < min_epochs:
            notes.append(f"skipped {folder}: {run.epochs} epochs logged, --min_epochs {min_epochs}")
        else:
            runs.append(run)
    if not runs:
        raise UsageError(f"--min_epochs {min_epochs}: no run has that many epochs logged")
    rows = group_runs(runs)
    for row in rows:
        seeds = row.seeds
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            notes.append(f"{row.dataset} / {row.group}: seed(s) {' '.join(map(str, repeated))} appear in several runs")
    names = list(names) if names else default_names(runs)
    known = {n for r in runs for n in r.values}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"--metrics: {' '.join(unknown)} not logged by any run; logged: {' '.join(sorted(known))}")
    return rows, names, notes
