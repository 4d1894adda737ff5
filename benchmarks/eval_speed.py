"""Evaluation speed and memory at Stanford Online Products scale, ours vs pytorch-metric-learning.

    python benchmarks/eval_speed.py                 # SOP size: 60,502 x 128, 11,316 classes
    python benchmarks/eval_speed.py --n 5924 --classes 100   # CUB size

1. The shared metric set (P@1, MAP@R, R-Precision, NMI) with `metrics.compute_metrics` and with PML's
   `AccuracyCalculator(k="max_bin_count")` on the same synthetic embeddings; both run faiss k-means with
   20 iterations and the same seed, so every value must be equal. Prints both times, their ratio and both
   peak memories.
2. Ours on the full default set (Recall@1/2/4/8/10/100/1000, NMI, MAP@R, R-Precision): time and peak memory.

Each measurement runs in its own fresh subprocess, which builds the data, records its peak resident set
size (`ru_maxrss`, which counts numpy, faiss and torch allocations alike) before the call as the baseline,
times the call, and reports the peak after it. `--repeats n` alternates the order of the two sides and
keeps each side's fastest run, to damp the noise of a shared machine. Values are compared to 1e-12.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SHARED = {"precision_at_1": "e_recall@1", "mean_average_precision_at_r": "mAP@R", "r_precision": "r_precision",
          "NMI": "nmi"}
PEAK_LIMIT_MB = 4096


def make_data(n: int, n_classes: int, dim: int, seed: int):
    """Class centres plus noise, L2-normalised; every class has at least 2 samples (SOP: 2-12)."""
    rng = np.random.default_rng(seed)
    sizes = 2 + rng.multinomial(n - 2 * n_classes, np.full(n_classes, 1.0 / n_classes))
    labels = rng.permutation(np.repeat(np.arange(n_classes), sizes))
    centres = rng.normal(size=(n_classes, dim)).astype(np.float32)
    x = centres[labels] + 1.4 * rng.normal(size=(n, dim)).astype(np.float32)  # SOP-like: R@1 ~ 0.75, MAP@R ~ 0.44
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels, int(sizes.max())


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def worker(args) -> dict:
    x, labels, _ = make_data(args.n, args.classes, args.dim, args.seed)
    if args.worker == "pml":
        import faiss
        import torch
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
        from pytorch_metric_learning.utils.inference import FaissKMeans

        faiss.omp_set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
        calculator = AccuracyCalculator(include=tuple(SHARED), k="max_bin_count", device=torch.device("cpu"),
                                        kmeans_func=FaissKMeans(niter=20, seed=args.seed))
        run = lambda: {SHARED[k]: v for k, v in calculator.get_accuracy(x, labels).items()}  # noqa: E731
    else:
        import metrics
        import parameters

        names = list(SHARED.values()) if args.worker == "ours" else parameters.DEFAULT_EVALUATION_METRICS
        run = lambda: metrics.compute_metrics(x, labels, names, seed=args.seed, threads=args.threads)  # noqa: E731
    baseline = peak_mb()
    start = time.perf_counter()
    values = run()
    seconds = time.perf_counter() - start
    return {"values": values, "seconds": seconds, "peak_mb": peak_mb(), "baseline_mb": baseline}


def measure(side: str, args) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", side, "--n", str(args.n), "--classes",
               str(args.classes), "--dim", str(args.dim), "--seed", str(args.seed), "--threads", str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=60502)
    parser.add_argument("--classes", type=int, default=11316)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--worker", choices=["ours", "pml", "ours_full"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    _, _, largest = make_data(args.n, args.classes, args.dim, args.seed)
    print(f"synthetic embeddings {args.n} x {args.dim}, {args.classes} classes (2-{largest} per class), "
          f"{args.threads} threads, seed {args.seed}")
    runs = {"ours": [], "pml": []}
    for repeat in range(args.repeats):
        for side in (("ours", "pml") if repeat % 2 == 0 else ("pml", "ours")):
            runs[side].append(measure(side, args))
    ours, pml = (min(runs[s], key=lambda r: r["seconds"]) for s in ("ours", "pml"))
    print("\n1. shared set: ours (metrics.compute_metrics) vs PML AccuracyCalculator(k='max_bin_count')")
    equal = True
    for theirs, name in SHARED.items():
        same = abs(ours["values"][name] - pml["values"][name]) <= 1e-12
        equal &= same
        print(f"   {theirs:28s} ours {ours['values'][name]:.10f}  PML {pml['values'][name]:.10f}  "
              f"{'equal' if same else 'DIFFERENT'}")
    for label, side, r in (("ours", "ours", ours), ("PML", "pml", pml)):
        all_runs = ", ".join(f"{x['seconds']:.2f}" for x in runs[side])
        print(f"   {label:4s}: {r['seconds']:7.2f} s   peak RSS {r['peak_mb']:7.0f} MB "
              f"(+{r['peak_mb'] - r['baseline_mb']:.0f} MB over the {r['baseline_mb']:.0f} MB before the call)   "
              f"all runs: {all_runs} s")
    print(f"   time ratio PML / ours = {pml['seconds'] / ours['seconds']:.2f}x "
          f"({'ours faster' if ours['seconds'] < pml['seconds'] else 'ours NOT faster'})")

    full = measure("ours_full", args)
    print("\n2. ours, full default set")
    print("   " + "  ".join(f"{k} {v:.4f}" for k, v in full["values"].items()))
    print(f"   {full['seconds']:7.2f} s   peak RSS {full['peak_mb']:7.0f} MB "
          f"(+{full['peak_mb'] - full['baseline_mb']:.0f} MB over the {full['baseline_mb']:.0f} MB before the call)   "
          f"{'under' if full['peak_mb'] < PEAK_LIMIT_MB else 'OVER'} the {PEAK_LIMIT_MB} MB budget")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
