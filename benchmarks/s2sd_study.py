"""The S2SD study: does S2SD beat its baseline here, for which losses, sizes, backbones and budgets?

One command trains every run of a fractional design on the embedded datasets (3 seeds each), then turns the run
folders into tables with Result_Evaluations.py and writes `<out>/study.md`:

    python benchmarks/s2sd_study.py --out /work/study_runs/s2sd [--jobs 2] [--seeds 0 1 2] [--cells ...]

The paper's four claims (docs/results.md) and the runs that test each (every run: --use_tv_split, so the
validation classes are held out of training and logged next to the test classes each epoch):

* `losses`: multisimilarity, margin (distance miner) and triplet (semihard miner), each alone and with S2SD,
  embedding 32, short budget; on `glyphs_scratch` and `icons_pretrained` (claim 1).
* `dims`: multisimilarity alone and with S2SD at embedding 16, 32 and 128, short budget; `glyphs_scratch` only
  (claim 2).
* `variants`: S2SD on multisimilarity at 32 with the distillation weight w 10 or 50, with or without feature
  distillation, one head (1024) instead of three (256 512 1024), short budget (claims 3 and 4): all of them on
  `glyphs_scratch`; feature distillation and one head on `icons_pretrained`; feature distillation on
  `icons_scratch`. These are also the tuning grid: the S2SD variant with the best validation Recall@1 is the one
  the evidence recommends.
* `budget`: multisimilarity alone and with S2SD at 32, long budget; its first epochs are the short-budget runs
  (the learning rate is constant, so a run's first k epochs are the run --n_epochs k makes). Recall@1 per epoch.
* the cost: seconds per training step of every setting, measured side by side in one process after the runs
  (`step_seconds.json`); the S2SD/baseline ratio is in every table (claim 4's "small training-time cost").

S2SD's default variant here (in `losses` and `dims`) is the paper's MSD: three target heads, KL weight w 10 at
T 1, no feature distillation. Learning rates and w 10 are the README quickstart's (chosen on glyphs before
this study); feature distillation, when on, starts after one epoch of steps.

Runs go to `<out>/runs/<dataset>/<group>_s<seed>`; a finished run (summary.json, same command) is kept and
skipped, so the command resumes an interrupted study. Checkpoints are deleted once a run ends (logs stay).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import Result_Evaluations  # noqa: E402
from evaluation import results_table  # noqa: E402


@dataclass(frozen=True)
class Cell:
    """A dataset and a backbone, with the budgets and learning rate used for every run on them."""

    name: str
    dataset: str
    backbone: Tuple[str, ...]
    lr: float
    short_epochs: int
    long_epochs: int
    steps_per_epoch: int  # with --use_tv_split at --bs 112; feature distillation starts after this many steps


CELLS = {c.name: c for c in (
    Cell("glyphs_scratch", "glyphs", ("--arch", "slimresnet18_normalize", "--not_pretrained"), 3e-4, 2, 5, 41),
    Cell("icons_pretrained", "icons", ("--arch", "efficientnet_lite0_normalize"), 1e-3, 3, 6, 7),
    Cell("icons_scratch", "icons", ("--arch", "slimresnet18_normalize", "--not_pretrained"), 3e-4, 10, 10, 7),
)}

LOSSES = {  # name in group -> flags of the loss alone, and the source/target part of S2SD
    "ms": (("--loss", "multisimilarity"), ("--loss_s2sd_source", "multisimilarity",
                                           "--loss_s2sd_target", "multisimilarity")),
    "margin": (("--loss", "margin", "--batch_mining", "distance"), ("--loss_s2sd_source", "margin",
                                                                    "--loss_s2sd_target", "margin",
                                                                    "--batch_mining", "distance")),
    "triplet": (("--loss", "triplet", "--batch_mining", "semihard"), ("--loss_s2sd_source", "triplet",
                                                                      "--loss_s2sd_target", "triplet",
                                                                      "--batch_mining", "semihard")),
}
HEADS = ("256", "512", "1024")
VARIANTS = {  # S2SD variant -> (w, target dims, feature distillation)
    "s2sd": (10, HEADS, False),
    "s2sd_w50": (50, HEADS, False),
    "s2sd_feat": (10, HEADS, True),
    "s2sd_w50_feat": (50, HEADS, True),
    "s2sd_1head": (10, ("1024",), False),
}
METRICS = ("test/e_recall@1", "test/mAP@R", "test/nmi", "val/e_recall@1", "val/mAP@R")
EVALUATION = ("--evaluation_metrics", "e_recall@1", "e_recall@2", "nmi", "mAP@R", "r_precision")


@dataclass(frozen=True)
class Setting:
    cell: Cell
    loss: str
    dim: int
    variant: str  # "base" or a VARIANTS key

    @property
    def group(self) -> str:
        return f"{self.cell.name}-{self.loss}{self.dim}-{self.variant}"

    def flags(self) -> List[str]:
        c = self.cell
        argv = ["--dataset", c.dataset, *c.backbone, "--embed_dim", str(self.dim), "--lr", f"{c.lr:g}"]
        alone, s2sd = LOSSES[self.loss]
        if self.variant == "base":
            return argv + list(alone)
        w, dims, feat = VARIANTS[self.variant]
        argv += ["--loss", "s2sd", *s2sd, "--loss_s2sd_w", str(w), "--loss_s2sd_target_dims", *dims]
        if feat:
            argv += ["--loss_s2sd_feat_distill", "--loss_s2sd_feat_distill_delay", str(c.steps_per_epoch)]
        return argv


@dataclass(frozen=True)
class Table:
    """Groups compared at one budget: each S2SD group against the baseline of its loss and size."""

    section: str
    cell: Cell
    settings: Tuple[Setting, ...]
    epochs: int

    @property
    def name(self) -> str:
        return f"{self.section}-{self.cell.name}"


def design(cells: Sequence[str]) -> List[Table]:
    tables = []
    for name in cells:
        c = CELLS[name]
        if name in ("glyphs_scratch", "icons_pretrained"):
            tables.append(Table("losses", c, tuple(Setting(c, loss, 32, v) for loss in LOSSES for v in ("base", "s2sd")),
                                c.short_epochs))
        if name == "glyphs_scratch":
            tables.append(Table("dims", c, tuple(Setting(c, "ms", d, v) for d in (16, 32, 128) for v in ("base", "s2sd")),
                                c.short_epochs))
        variants = {"glyphs_scratch": ("base", *VARIANTS), "icons_pretrained": ("base", "s2sd", "s2sd_feat", "s2sd_1head"),
                    "icons_scratch": ("base", "s2sd", "s2sd_feat")}[name]
        tables.append(Table("variants", c, tuple(Setting(c, "ms", 32, v) for v in variants), c.short_epochs))
        if c.long_epochs > c.short_epochs:
            tables.append(Table("budget", c, (Setting(c, "ms", 32, "base"), Setting(c, "ms", 32, "s2sd")),
                                c.long_epochs))
    return tables


def runs_of(tables: Sequence[Table]) -> Dict[Setting, int]:
    """Every setting once, with the largest budget any table reads from it."""
    epochs: Dict[Setting, int] = {}
    for table in tables:
        for setting in table.settings:
            epochs[setting] = max(epochs.get(setting, 0), table.epochs)
    return epochs


# ---------------------------------------------------------------------------------------------------------- running

def command(setting: Setting, epochs: int, seed: int, save_path: str, kernels: int) -> List[str]:
    return [sys.executable, os.path.join(ROOT, "main.py"), *setting.flags(), "--n_epochs", str(epochs),
            "--seed", str(seed), "--use_tv_split", "--no_train_metrics", *EVALUATION, "--kernels", str(kernels),
            "--tsne_points", "0", "--retrieval_queries", "0", "--plot_every", "0", "--device", "cpu",
            "--save_path", save_path, "--group", setting.group, "--savename", f"{setting.group}_s{seed}"]


def run_dir(out: str, setting: Setting, seed: int) -> str:
    return os.path.join(out, "runs", setting.cell.dataset, f"{setting.group}_s{seed}")


def train(argv: List[str], folder: str, log_path: str, threads: int) -> str:
    """Run one training unless the same command already finished in `folder`; returns what happened."""
    record = os.path.join(folder, "study_command.json")
    if os.path.isfile(os.path.join(folder, "summary.json")):
        with open(record) as f:
            if json.load(f) != argv[1:]:
                raise SystemExit(f"s2sd_study.py: error: {folder} was made by another command; delete it to rerun")
        return "kept"
    if os.path.isdir(folder):
        shutil.rmtree(folder)  # an interrupted run starts again from scratch
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), WANDB_MODE="disabled")
    start = time.time()
    with open(log_path, "w") as log:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"s2sd_study.py: error: a run failed (exit {done.returncode}); see {log_path}")
    with open(record, "w") as f:
        json.dump(argv[1:], f)
    for name in os.listdir(folder):
        if name.endswith(".pth.tar"):
            os.remove(os.path.join(folder, name))
    return f"{time.time() - start:.0f} s"


def train_all(tables: Sequence[Table], out: str, seeds: Sequence[int], jobs: int, epochs_cap: Optional[int]) -> None:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    logs = os.path.join(out, "logs")
    os.makedirs(logs, exist_ok=True)
    todo = []
    for setting, epochs in runs_of(tables).items():
        epochs = min(epochs, epochs_cap) if epochs_cap else epochs
        for seed in seeds:
            folder = run_dir(out, setting, seed)
            argv = command(setting, epochs, seed, os.path.join(out, "runs"), kernels=threads)
            todo.append((argv, folder, os.path.join(logs, os.path.basename(folder) + ".log")))

    def one(job):
        status = train(*job, threads)
        print(f"{os.path.basename(job[1])}: {status}", flush=True)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, todo))


# ----------------------------------------------------------------------------------------------------------- timing

def step_seconds(settings: Sequence[Setting], rounds: int, threads: int) -> Dict[str, float]:
    """Median seconds of one training step (forward, loss, backward, Adam step at --bs 112) of each setting.

    The runs' epoch times are no measure of S2SD's cost on a shared machine (other load comes and goes between
    runs), so the cost is measured here: every setting of a cell steps on the same batches, and the settings take
    turns round by round in this one process, so that load from elsewhere hits them alike."""
    import statistics

    import torch

    import architectures
    import criteria
    import datasets
    import parameters
    from main import build_optimizer

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        steps = {}
        for cell in dict.fromkeys(s.cell for s in settings):
            members = [s for s in settings if s.cell == cell]
            opt = parameters.parse(members[0].flags() + ["--use_tv_split"])
            train = datasets.select(cell.dataset, opt, "")["training"]
            torch.manual_seed(0)
            indices = [list(b) for _, b in zip(range(max(rounds, 1)), datasets.select_sampler(opt.data_sampler, train,
                                                                                               opt))]
            batches = [(torch.stack([train[i][1] for i in b]), torch.as_tensor(train.labels[b])) for b in indices]
            for setting in members:
                steps[setting.group] = training_step(parameters.parse(setting.flags() + ["--use_tv_split"]),
                                                     train.n_classes, batches, architectures, criteria, build_optimizer)
        times: Dict[str, List[float]] = {group: [] for group in steps}
        for k in range(rounds):
            for group, step in steps.items():
                times[group].append(step(k))
    finally:  # the smoke test runs this in the test process, whose later runs must keep their thread count
        torch.set_num_threads(previous_threads)
    return {group: statistics.median(t) for group, t in times.items()}


def training_step(opt, n_classes, batches, architectures, criteria, build_optimizer):
    """A closure timing one step of `opt`'s model and criterion on batches[k % len(batches)] (after a warm-up)."""
    import torch

    from utilities.training import TrainingStep

    torch.manual_seed(0)
    model = architectures.select(opt.arch, opt).train()
    criterion = criteria.from_opt(opt.loss, opt, n_classes=n_classes, feature_dim=model.feature_dim).train()
    optimizer, _ = build_optimizer(opt, model, criterion)
    one_step = TrainingStep(model, criterion)  # the training loop's forward, as main.py runs it

    def step(k: int) -> float:
        images, labels = batches[k % len(batches)]
        start = time.perf_counter()
        loss, _ = one_step(images, labels)
        one_step.precision.backward_and_step(loss, optimizer)
        return time.perf_counter() - start

    step(0)
    return step


# ----------------------------------------------------------------------------------------------------------- tables

def cut(table: Table, epochs_cap: Optional[int]) -> int:
    return min(table.epochs, epochs_cap) if epochs_cap else table.epochs


def stats_of(csv_path: str) -> Dict[str, Dict[str, Tuple[float, float, int]]]:
    """group -> value -> (mean, std, runs) of the last-epoch protocol, from Result_Evaluations' CSV file."""
    found: Dict[str, Dict[str, Tuple[float, float, int]]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if row["protocol"] == "last":
                found[row["group"]] = {name: (float(row[f"{name} mean"]), float(row[f"{name} std"]), int(row["runs"]))
                                       for name in METRICS}
    return found


def difference(s2sd: Tuple[float, float, int], base: Tuple[float, float, int]) -> str:
    """S2SD - baseline, and that difference in standard errors (stds with ddof 0 over n seeds each)."""
    (m1, s1, n), (m0, s0, _) = s2sd, base
    delta = m1 - m0
    if n < 2:
        return f"{delta:+.1f}"
    se = math.sqrt((s1 ** 2 + s0 ** 2) / (n - 1))
    return f"{delta:+.1f} ({delta / se:+.1f} se)" if se > 0 else f"{delta:+.1f}"


def comparison(table: Table, stats, seconds: Dict[str, float]) -> List[str]:
    """One line per S2SD group: its values, the difference to its baseline and the step-time ratio."""
    lines = ["| group | test R@1 | test MAP@R | test NMI | val R@1 | ΔR@1 vs base | ΔMAP@R vs base | "
             "step time vs base |", "| --- " * 8 + "|"]
    for setting in table.settings:
        values = stats.get(setting.group)
        if values is None:
            continue
        cells = [f"{values[m][0]:.1f} ± {values[m][1]:.1f}" for m in METRICS[:4]]
        base = stats.get(Setting(setting.cell, setting.loss, setting.dim, "base").group)
        if setting.variant == "base" or base is None:
            extra = ["", "", ""]
        else:
            base_group = Setting(setting.cell, setting.loss, setting.dim, "base").group
            ratio = (f"{seconds[setting.group] / seconds[base_group]:.2f}x"
                     if setting.group in seconds and base_group in seconds else "")
            extra = [difference(values["test/e_recall@1"], base["test/e_recall@1"]),
                     difference(values["test/mAP@R"], base["test/mAP@R"]), ratio]
        lines.append(f"| {setting.group} | " + " | ".join(cells + extra) + " |")
    return lines


def selection(table: Table, stats) -> str:
    """The S2SD variant with the best validation Recall@1, and whether it beats the baseline there: the setting
    this cell's evidence recommends (chosen without looking at the test classes)."""
    scored = [(stats[s.group]["val/e_recall@1"][0], s.group) for s in table.settings
              if s.variant != "base" and s.group in stats]
    base = next((s.group for s in table.settings if s.variant == "base"), None)
    if not scored or base not in stats:
        return "Selection: runs missing."
    best_val, best = max(scored)
    base_val = stats[base]["val/e_recall@1"][0]
    test = stats[best]["test/e_recall@1"]
    verdict = "above" if best_val > base_val else "not above"
    return (f"Selected on the validation classes: **{best}** (val Recall@1 {best_val:.1f}, {verdict} the baseline's "
            f"{base_val:.1f}); its test Recall@1 {test[0]:.1f} ± {test[1]:.1f}.")


def curves(table: Table, out: str, seeds: Sequence[int], epochs: int) -> List[str]:
    """Test and validation Recall@1 per epoch, mean ± std over seeds, for each group of a budget table."""
    folders = [f for f in (run_dir(out, s, seed) for s in table.settings for seed in seeds)
               if os.path.isfile(os.path.join(f, "summary.json"))]
    lines = ["| epoch | " + " | ".join(f"{s.group} {split}" for s in table.settings for split in ("test", "val"))
             + " |", "| --- " * (1 + 2 * len(table.settings)) + "|"]
    for epoch in range(1, epochs + 1):
        rows, _, _ = results_table.build(folders, ["test/e_recall@1", "val/e_recall@1"], at_epoch=epoch)
        by_group = {row.group: row for row in rows}
        cells = []
        for setting in table.settings:
            for name in ("test/e_recall@1", "val/e_recall@1"):
                row = by_group.get(setting.group)  # absent while a study is still running
                mean, std, _ = row.stats(name, "last") if row else (math.nan, math.nan, 0)
                cells.append(f"{100 * mean:.1f} ± {100 * std:.1f}")
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return lines


def tabulate(tables: Sequence[Table], out: str, seeds: Sequence[int], epochs_cap: Optional[int]) -> str:
    seconds_path = os.path.join(out, "step_seconds.json")
    seconds = json.load(open(seconds_path)) if os.path.isfile(seconds_path) else {}
    report = [f"# S2SD study ({len(seeds)} seeds: {' '.join(map(str, seeds))})", "",
              "Values in %, mean ± std over seeds (ddof 0) after the table's epochs; Δ = S2SD - baseline, in points "
              "and in standard errors of that difference; step time vs base = median seconds per training step of "
              "S2SD / of its baseline, measured side by side in one process (step_seconds.json).", ""]
    tables_dir = os.path.join(out, "tables")
    os.makedirs(tables_dir, exist_ok=True)
    for table in tables:
        epochs = cut(table, epochs_cap)
        folders = [run_dir(out, s, seed) for s in table.settings for seed in seeds]
        folders = [f for f in folders if os.path.isfile(os.path.join(f, "summary.json"))]
        if not folders:
            continue
        prefix = os.path.join(tables_dir, table.name)
        Result_Evaluations.main(["--runs", *folders, "--metrics", *METRICS, "--at_epoch", str(epochs),
                                 "--out", prefix, "--digits", "1"])
        stats = stats_of(prefix + ".csv")
        report += [f"## {table.section}: {table.cell.name}, {epochs} epochs", ""] + comparison(table, stats, seconds) + [""]
        if table.section == "variants":
            report += [selection(table, stats), ""]
        if table.section == "budget":
            report += ["Recall@1 per epoch:", ""] + curves(table, out, seeds, epochs) + [""]
    text = "\n".join(report)
    with open(os.path.join(out, "study.md"), "w") as f:
        f.write(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2sd_study.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="Folder for runs/, logs/, tables/ and study.md.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cells", nargs="+", choices=sorted(CELLS), default=list(CELLS))
    parser.add_argument("--sections", nargs="+", choices=["losses", "dims", "variants", "budget"],
                        default=["losses", "dims", "variants", "budget"])
    parser.add_argument("--groups", nargs="+", default=None,
                        help="Only these groups (e.g. glyphs_scratch-ms32-base), for a quick look.")
    parser.add_argument("--max_epochs", type=int, default=None, help="Cap every budget (a smoke test).")
    parser.add_argument("--jobs", type=int, default=1, help="Trainings at once; each gets cores/jobs threads.")
    parser.add_argument("--timing_rounds", type=int, default=7,
                        help="Interleaved rounds of the step-time measurement (0: none).")
    parser.add_argument("--tables_only", action="store_true", help="Tabulate the runs there are; train nothing.")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = build_parser().parse_args(argv)
    tables = [t for t in design(args.cells) if t.section in args.sections]
    if args.groups:
        tables = [Table(t.section, t.cell, tuple(s for s in t.settings if s.group in args.groups), t.epochs)
                  for t in tables]
        tables = [t for t in tables if t.settings]
    if not tables:
        raise SystemExit("s2sd_study.py: error: --groups: no such group in the chosen --cells and --sections")
    if not args.tables_only:
        train_all(tables, args.out, args.seeds, args.jobs, args.max_epochs)
        if args.timing_rounds:
            seconds = step_seconds(list(runs_of(tables)), args.timing_rounds, threads=1)
            with open(os.path.join(args.out, "step_seconds.json"), "w") as f:
                json.dump(seconds, f, indent=1)
    text = tabulate(tables, args.out, args.seeds, args.max_epochs)
    print(text)
    return text


if __name__ == "__main__":
    main()
