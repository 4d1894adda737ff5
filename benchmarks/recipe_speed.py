"""Where the time of the paper's CUB recipe goes, and what the GPU paths of issue 10 save, in one process.

Runs the seed README's recipe (README.md section 3: ResNet-50 frozen/normalize at 224 px, batch 112, S2SD with
multisimilarity source and targets 512/1024/1536/2048 and feature distillation, evaluation of the test and
training images every epoch) through `main.main` for a few epochs on a synthetic CUB-sized JPEG tree
(benchmarks/synthetic_cub.py: 5,864 + 5,924 images of ~500 x 375, ~47 KB, made once and reused), twice:

* **this branch**: the defaults (bf16 autocast, channels-last, cuDNN autotuning, fused Adam, the decoded-image
  store with batch-wise augmentation on the device, evaluation and metrics on the device in large batches,
  NaN checks read every 25 steps, checkpoints written in the background, pictures at the end only);
* **items 1-4 off**: the same epochs with `--amp off --deterministic --data_cache off --plot_every 1` and the
  rest switched back by patching this process: no channels-last, no fused optimizer, streaming workers
  started afresh each epoch, evaluation batches of --bs copied to the host batch by batch and scored with
  faiss on the CPU (torch on the CPU when faiss is not installed), the loss read every step, checkpoints
  written before training goes on (the main branch before this work, as far as it can be rebuilt here).

For each it prints training images/s, the backbone's model-only forward + backward images/s at the same
precision on the same device (random inputs already there) and their ratio, evaluation seconds per epoch,
host seconds per epoch (logging, checkpoints, pictures: the time between the end of an epoch's evaluation
and the next epoch's training), the one-time seconds before the first epoch (data scan, model, decoded
store), and the projected wall time of the 150-epoch recipe; then the ratios of the two. ResNet-50 starts
from random weights (--not_pretrained): the speed is the same and no weights are needed.

    python benchmarks/recipe_speed.py [--epochs 3] [--root /tmp/s2sd_bench] [--json FILE]
    python benchmarks/recipe_speed.py --tiny      # CPU smoke run: tiny tree, slim ResNet-18 at 32 px, ~1 minute

With --tiny on a CPU the branch's run uses --data_cache ram (auto keeps the streaming path on a CPU), so the
store and the batch-wise augmentation run too.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import time
from typing import Dict, List, Tuple
from unittest import mock

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import architectures  # noqa: E402
import evaluation  # noqa: E402
import evaluation.epoch as evaluation_epoch  # noqa: E402
import main as main_module  # noqa: E402
import parameters  # noqa: E402
from benchmarks import synthetic_cub  # noqa: E402
from datasets import loading  # noqa: E402
from utilities import precision as precision_module  # noqa: E402
from utilities import training  # noqa: E402
from utilities.async_checkpoint import CheckpointWriter  # noqa: E402
from utilities.device import resolve_device  # noqa: E402

RECIPE = ["--dataset", "cub200", "--seed", "0", "--bs", "112", "--loss", "s2sd",
          "--loss_distill_source", "multisimilarity", "--loss_distill_target", "multisimilarity",
          "--loss_distill_T", "1", "--loss_distill_w", "50", "--loss_distill_net_dims", "512", "1024", "1536", "2048",
          "--loss_distill_match_feats", "--loss_distill_feat_w", "50", "--arch", "resnet50_frozen_normalize",
          "--embed_dim", "128", "--loss_distill_max_feat_iter", "1000", "--not_pretrained"]
TINY = ["--arch", "slimresnet18_frozen_normalize", "--resolution", "32", "--bs", "8", "--kernels", "1",
        "--loss_distill_net_dims", "64", "128", "--tsne_points", "200"]
LEGACY_FLAGS = ["--amp", "off", "--deterministic", "--data_cache", "off", "--plot_every", "1"]
RECIPE_EPOCHS = 150


@contextlib.contextmanager
def items_1_to_4_off():
    """Patch this process back to the paths the flags cannot switch off (module docstring)."""
    def cpu_metrics(opt, device):
        return ("faiss" if importlib.util.find_spec("faiss") else "torch"), None

    def written_at_once(self, state, path):
        save(self, state, path)
        self.wait()

    save = CheckpointWriter.save
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(precision_module, "is_convolutional", lambda model: False))
        stack.enter_context(mock.patch.object(main_module, "optimizer_options", lambda cls, device: {}))
        stack.enter_context(mock.patch.object(loading, "LEAN_ON_CUDA", False))
        stack.enter_context(mock.patch.object(loading, "CUDA_EVAL_BATCH", 0))
        stack.enter_context(mock.patch.object(evaluation, "metric_backend", cpu_metrics))
        stack.enter_context(mock.patch.object(training, "CUDA_CHECK_EVERY", 1))
        stack.enter_context(mock.patch.object(CheckpointWriter, "save", written_at_once))
        yield


@contextlib.contextmanager
def timed_phases(events: List[Tuple[str, float, float]]):
    """Record (phase, start, end) of every training epoch and every split's evaluation in `main.main`."""
    train, score = main_module.train_one_epoch, evaluation_epoch.embed_and_score

    def wrap(name, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                events.append((name, start, time.perf_counter()))
        return timed

    with mock.patch.object(main_module, "train_one_epoch", wrap("train", train)), \
            mock.patch.object(evaluation_epoch, "embed_and_score", wrap("eval", score)):
        yield


def run_recipe(argv: List[str], n_train: int) -> Dict[str, float]:
    """Run main.main(argv); per-epoch seconds of training, evaluation and host work, and the one-time seconds."""
    events: List[Tuple[str, float, float]] = []
    start = time.perf_counter()
    with timed_phases(events):
        main_module.main(argv)
    end = time.perf_counter()
    trains = [(s, e) for name, s, e in events if name == "train"]
    epochs = []
    for k, (s, e) in enumerate(trains):
        following = trains[k + 1][0] if k + 1 < len(trains) else end
        evals = [(a, b) for name, a, b in events if name == "eval" and e <= a <= following]
        eval_end = max([b for _, b in evals], default=e)
        epochs.append({"train": e - s, "eval": sum(b - a for a, b in evals), "host": following - eval_end})
    steady = epochs[1:] or epochs  # the first epoch autotunes kernels and warms caches
    bs = parameters.parse(argv).bs
    return {
        "train_img_s": n_train // bs * bs / statistics.median(e["train"] for e in steady),
        "eval_s": statistics.median(e["eval"] for e in steady),
        "host_s": statistics.median(e["host"] for e in epochs[:-1]) if len(epochs) > 1 else epochs[0]["host"],
        "end_of_run_s": epochs[-1]["host"],
        "one_time_s": trains[0][0] - start,
        "first_epoch_s": sum(epochs[0].values()),
        "epochs": epochs,
    }


def projected_minutes(r: Dict[str, float]) -> float:
    """One-time + first epoch + 149 steady epochs, the last one's host work replaced by the end of the run."""
    per_epoch = r["train_s_per_epoch"] + r["eval_s"] + r["host_s"]
    return (r["one_time_s"] + r["first_epoch_s"] + (RECIPE_EPOCHS - 1) * per_epoch + r["end_of_run_s"]
            - r["host_s"]) / 60


def model_only_img_s(argv: List[str], steps: int) -> float:
    """Backbone forward + backward images/s at the run's precision and memory format, inputs on the device."""
    opt = parameters.parse(argv)
    device = resolve_device(opt)
    precision_module.configure_kernels(device, precision_module.deterministic(opt, device))
    model = architectures.select(opt.arch, opt).to(device).train()
    precision = precision_module.Precision.build(opt, device, model)
    precision.prepare_model(model)
    crop = opt.resolution or architectures.input_convention(opt.arch).crop
    images = precision.prepare_images(torch.randn(opt.bs, 3, crop, crop, device=device))

    def step():
        with precision.autocast():
            out = model(images)
        out["embeds"].sum().backward()
        model.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * opt.bs / (time.perf_counter() - start)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(argv: List[str], n_train: int, model_steps: int) -> Dict[str, float]:
    result = run_recipe(argv, n_train)
    result["model_only_img_s"] = model_only_img_s(argv, model_steps)
    result["ratio_to_model_only"] = result["train_img_s"] / result["model_only_img_s"]
    opt = parameters.parse(argv)
    result["train_s_per_epoch"] = statistics.median(e["train"] for e in (result["epochs"][1:] or result["epochs"]))
    result["projected_150_epochs_min"] = projected_minutes(result)
    result["device"] = str(resolve_device(opt))
    return result


ROWS = [("training img/s", "train_img_s", "{:.0f}"),
        ("model-only fwd+bwd img/s", "model_only_img_s", "{:.0f}"),
        ("ratio to model-only", "ratio_to_model_only", "{:.2f}"),
        ("evaluation s/epoch", "eval_s", "{:.2f}"),
        ("host s/epoch", "host_s", "{:.2f}"),
        ("one-time s (before epoch 1)", "one_time_s", "{:.1f}"),
        ("end of run s (pictures, t-SNE)", "end_of_run_s", "{:.1f}"),
        ("projected 150 epochs, min", "projected_150_epochs_min", "{:.1f}")]


def table(new: Dict[str, float], old: Dict[str, float]) -> str:
    lines = [f"{'':34s} {'this branch':>12s} {'items 1-4 off':>14s} {'gain':>7s}"]
    for label, key, fmt in ROWS:
        higher = key in ("train_img_s", "model_only_img_s", "ratio_to_model_only")
        gain = new[key] / old[key] if higher else old[key] / max(new[key], 1e-9)
        lines.append(f"{label:34s} {fmt.format(new[key]):>12s} {fmt.format(old[key]):>14s} {gain:6.2f}x")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run (about a minute)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--root", default=os.environ.get("S2SD_BENCH_ROOT", "/tmp/s2sd_bench"),
                        help="where the synthetic tree, the decoded-image cache and the run folders go")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--skip_legacy", action="store_true", help="time this branch only")
    args = parser.parse_args()
    tree = os.path.join(args.root, "tiny" if args.tiny else "full")
    start = time.perf_counter()
    manifest = synthetic_cub.make_tree(tree, synthetic_cub.TINY if args.tiny else synthetic_cub.FULL)
    print(f"synthetic CUB tree: {manifest['images']} images, {manifest['mean_kb']:.1f} KB mean, "
          f"{time.perf_counter() - start:.1f} s (made once; reused from {tree})", flush=True)
    common = RECIPE + (TINY if args.tiny else []) + [
        "--source_path", tree, "--n_epochs", str(args.epochs), "--save_path", os.path.join(args.root, "runs"),
        "--savename", f"recipe_speed_{int(time.time())}"]
    os.environ.setdefault("WANDB_MODE", "disabled")
    on_cpu = not torch.cuda.is_available()
    model_steps = 3 if args.tiny else 20
    n_train = manifest["spec"]["train_images"]
    new = measure(common + (["--data_cache", "ram"] if args.tiny and on_cpu else []), n_train, model_steps)
    if args.skip_legacy:
        old = new
    else:
        with items_1_to_4_off():
            old = measure(common[:-1] + [common[-1] + "_legacy"] + LEGACY_FLAGS, n_train, model_steps)
    print(f"\nrecipe: {'tiny smoke variant' if args.tiny else 'seed README (ResNet-50, 224 px, bs 112, S2SD)'}, "
          f"{args.epochs} epochs per column, on {new['device']}")
    print(table(new, old), flush=True)
    report = {"this_branch": new, "items_1_to_4_off": old, "tree": manifest}
    path = args.json or (os.path.join(os.environ["OUT"], "recipe_speed.json") if os.environ.get("OUT") else None)
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
