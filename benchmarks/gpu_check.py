"""The CUDA checks of benchmarks/gpu_check.sh, one per call (each in a fresh process, so one failing check,
even a broken CUDA context, cannot take the others down), and the final table.

    python benchmarks/gpu_check.py <check> --work DIR   # bf16_step fp16_scaler image_store metrics nan_stop resume
                                                        # ddp profile
    python benchmarks/gpu_check.py summary --logs DIR
    python benchmarks/gpu_check.py <check> --rehearse    # the same check on the CPU, before a GPU is lent

A check prints what it measured and ends with `CHECK <name>: PASS` or raises (exit status 1). Needs CUDA,
torch, torchvision, numpy, PIL, scipy, scikit-learn, matplotlib and tqdm; no faiss, no internet, no pytest,
no pretrained weights (every backbone starts from random weights).

`--rehearse` runs a check on the CPU: `--device cpu` and `--data_cache ram` for `cuda` and `device`, and the
expectations that only CUDA can meet (channels-last, fused Adam, metrics and embeddings on the GPU) printed as
not checked instead of failing. GPU time is scarce; a rehearsal finds the errors of this script's own code
first (it found that a second call on a warm machine read the first call's run folders).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import architectures  # noqa: E402
import criteria  # noqa: E402
import main as main_module  # noqa: E402
import metrics  # noqa: E402
import parameters  # noqa: E402
from benchmarks import synthetic_cub  # noqa: E402
from utilities.errors import EXIT_INTERRUPTED  # noqa: E402
from utilities.precision import Precision  # noqa: E402

#: Where the checks run: CUDA, or the CPU under --rehearse (set by `main`).
DEVICE = torch.device("cuda", 0)
REHEARSAL = False
#: A small CUB-layout tree of real-size JPEGs for the end-to-end checks: 4 + 4 classes, 16 + 16 images.
SMALL = synthetic_cub.TreeSpec(train_classes=4, test_classes=4, train_images=16, test_images=16)
TINY_RUN = ["--dataset", "cub200", "--arch", "slimresnet18_normalize", "--not_pretrained", "--embed_dim", "16",
            "--bs", "4", "--samples_per_class", "2", "--no_train_metrics", "--resolution", "64",
            "--loss", "s2sd", "--loss_s2sd_source", "margin", "--loss_s2sd_target", "margin", "--batch_mining",
            "distance", "--loss_s2sd_target_dims", "24", "32", "--loss_s2sd_feat_distill",
            "--loss_s2sd_feat_distill_delay", "3", "--lr", "1e-3", "--tau", "1", "--gamma", "0.5", "--seed", "3",
            "--tsne_points", "0", "--evaluation_metrics", "e_recall@1", "e_recall@2", "nmi", "--device", "cuda"]


def small_tree(work: str) -> str:
    root = os.path.join(work, "small_tree")
    synthetic_cub.make_tree(root, SMALL, workers=4)
    return root


def fresh(work: str, name: str) -> str:
    """`work/name`, emptied: a check run twice on one machine (a warm one keeps /tmp) must not find the run
    folders of the first call, which would make `--savename x` write `x_2` and leave `x` stale."""
    path = os.path.join(work, name)
    shutil.rmtree(path, ignore_errors=True)
    return path


def passed(name: str, detail: str) -> None:
    print(f"CHECK {name}: PASS ({'rehearsal on the CPU: ' if REHEARSAL else ''}{detail})", flush=True)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def require_on_cuda(condition: bool, message: str) -> None:
    """`require`, for what only CUDA can give; a rehearsal on the CPU prints it as not checked."""
    if REHEARSAL:
        if not condition:
            print(f"rehearsal, not checked on the CPU: {message}", flush=True)
        return
    require(condition, message)


def on_device(args):
    """main.py flags as given, or, in a rehearsal, with `--device cpu` and `--data_cache ram`."""
    if not REHEARSAL:
        return list(args)
    swaps = {("--device", "cuda"): "cpu", ("--data_cache", "device"): "ram"}
    return [swaps.get((before, arg), arg) for before, arg in zip([None, *args], args)]


# -- 1. mixed precision ------------------------------------------------------------------------------------------

def exact_fp32() -> None:
    """fp32 reference without TF32 (cuDNN uses TF32 for fp32 convolutions by default)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def loss_and_gradient(model, criterion, images, labels, precision):
    model.zero_grad(set_to_none=True)
    criterion.zero_grad(set_to_none=True)
    with precision.autocast():
        out = model(precision.prepare_images(images))
    loss = criterion(out["embeds"], labels, avg_batch_features=out["avg_features"], batch_features=out["features"])
    loss.backward()
    grads = [p.grad.flatten() for p in [*model.parameters(), *criterion.parameters()] if p.grad is not None]
    require(all(v.dtype == torch.float32 for v in out.values()) and loss.dtype == torch.float32,
            f"outputs and loss must be fp32: {[v.dtype for v in out.values()]}, {loss.dtype}")
    return loss.item(), torch.cat(grads)


def compare_step(arch: str, size: int, bs: int, dims, loss_tol: float, grad_tol: float, cos_min: float) -> str:
    opt = parameters.parse(["--dataset", "cub200", "--arch", arch, "--not_pretrained", "--loss", "s2sd",
                            "--loss_s2sd_target_dims", *map(str, dims), "--loss_s2sd_feat_distill",
                            "--loss_s2sd_feat_distill_delay", "0"])
    torch.manual_seed(0)
    model = architectures.select(arch, opt).to(DEVICE)
    criterion = criteria.from_opt("s2sd", opt, n_classes=bs // 2, feature_dim=model.feature_dim).to(DEVICE)
    images = torch.randn(bs, 3, size, size, device=DEVICE)
    labels = torch.arange(bs // 2, device=DEVICE).repeat_interleave(2)
    loss32, grad32 = loss_and_gradient(model, criterion, images, labels, Precision(DEVICE))
    bf16 = Precision(DEVICE, torch.bfloat16, channels_last=True)
    model.to(memory_format=torch.channels_last)
    loss16, grad16 = loss_and_gradient(model, criterion, images, labels, bf16)
    loss_err = abs(loss16 - loss32) / abs(loss32)
    grad_err = float((grad16 - grad32).norm() / grad32.norm())
    cosine = float(torch.nn.functional.cosine_similarity(grad16, grad32, dim=0))
    detail = f"{arch} {size}px: loss rel {loss_err:.2e}, grad rel L2 {grad_err:.3f}, cosine {cosine:.4f}"
    print(detail, flush=True)
    require(loss_err <= loss_tol and grad_err <= grad_tol and cosine >= cos_min,
            f"{detail}; tolerances loss {loss_tol}, grad {grad_tol}, cosine {cos_min}")
    return detail


def check_bf16_step(work: str) -> None:
    """A bf16 + channels-last step against fp32: the CPU test's model and tolerances, then the recipe's ResNet-50
    (deeper, 53 convolutions: looser, as bf16 rounding accumulates with depth; bf16 on the CPU gave gradient
    rel L2 0.255 and cosine 0.972 there, so 0.4 and 0.92; the loss tolerance, 1 %, still catches a lost fp32
    boundary, which moved the slim network's loss by 6.9 %)."""
    exact_fp32()
    slim = compare_step("slimresnet18_frozen_normalize", 32, 32, (64, 128), 1e-3, 0.15, 0.99)
    r50 = compare_step("resnet50_frozen_normalize", 224, 32, (512, 1024, 1536, 2048), 1e-2, 0.4, 0.92)
    passed("bf16_step", f"{slim}; {r50}")


def check_fp16_scaler(work: str) -> None:
    """fp16 with the grad scaler and fused Adam on CUDA: steps are taken, an inf step is skipped, scale halves."""
    opt = parameters.parse(on_device(["--arch", "slimresnet18_frozen_normalize", "--not_pretrained", "--loss",
                                      "multisimilarity", "--amp", "fp16", "--device", "cuda"]))
    torch.manual_seed(0)
    model = architectures.select(opt.arch, opt).to(DEVICE)
    criterion = criteria.from_opt("multisimilarity", opt).to(DEVICE)
    precision = Precision.build(opt, DEVICE, model)
    require(precision.name == "fp16" and precision.scaler is not None, f"--amp fp16 built {precision}")
    require_on_cuda(precision.channels_last, f"--amp fp16 on CUDA built {precision} (no channels-last)")
    precision.scaler = torch.amp.GradScaler(DEVICE.type, init_scale=2.0**10)  # no overflow skips in the first steps
    precision.prepare_model(model)
    optimizer = main_module.build_optimizer(opt, model, criterion, DEVICE)[0]
    require_on_cuda(optimizer.param_groups[0].get("fused") is True, "Adam is not fused on CUDA")
    images, labels = torch.randn(32, 3, 64, 64, device=DEVICE), torch.arange(16, device=DEVICE).repeat_interleave(2)
    weight = model.last_linear.weight

    def step(factor):
        with precision.autocast():
            out = model(precision.prepare_images(images))
        loss = criterion(out["embeds"], labels)
        require(bool(torch.isfinite(loss)), "fp16 loss not finite")
        precision.backward_and_step(loss * factor, optimizer)

    start = weight.detach().clone()
    step(1.0)
    step(1.0)
    require(not torch.equal(weight.detach(), start), "fp16 steps did not move the weights")
    before, scale = weight.detach().clone(), precision.scaler.get_scale()
    step(float("inf"))
    require(torch.equal(weight.detach(), before), "a step with infinite gradients was taken")
    require(precision.scaler.get_scale() == scale / 2, f"scale {precision.scaler.get_scale()} after an inf step")
    passed("fp16_scaler", f"fused Adam, scale {scale:.0f} -> {precision.scaler.get_scale():.0f} after an inf step")


# -- 2. the decoded-image store --------------------------------------------------------------------------------

def check_image_store(work: str) -> None:
    """nvJPEG-built stores against PIL-built ones; device augmentation against the same on the CPU; one epoch
    end to end with --data_cache device."""
    from datasets import image_store
    from datasets.device_augment import BatchAugment
    from datasets.image_store import StoreSpec

    tree = small_tree(work)
    images_root = os.path.join(tree, "cub200", "images")
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(images_root) for f in files)
    opt = parameters.parse(["--arch", "resnet50"])
    from datasets import transforms
    convention = architectures.input_convention(opt.arch)
    crop, resize = transforms.sizes(opt, convention)
    geometry = torch.nn.Sequential(*transforms.photo_geometry(opt, False, convention))
    start = time.perf_counter()
    gpu = image_store.build(paths, StoreSpec("eval", crop, resize, geometry), DEVICE, decode_device=DEVICE, threads=8)
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    gpu_seconds = time.perf_counter() - start
    pil = image_store.build(paths, StoreSpec("eval", crop, resize, geometry), torch.device("cpu"), decode_device=None,
                            threads=8)
    diff = (gpu.images.cpu().int() - pil.images.int()).abs().float()
    mean, share_far = float(diff.mean()), float((diff > 8).float().mean())
    print(f"eval store, nvJPEG vs PIL: mean |diff| {mean:.3f} grey levels, {100 * share_far:.3f} % of values > 8 off "
          f"({len(paths)} images, nvJPEG build {gpu_seconds:.2f} s)", flush=True)
    require(mean < 2.0 and share_far < 0.01, "nvJPEG and PIL stores differ more than decoder rounding explains")

    train_gpu = image_store.build(paths, StoreSpec("train", crop, resize), DEVICE, decode_device=DEVICE, threads=8)
    train_pil = image_store.build(paths, StoreSpec("train", crop, resize), torch.device("cpu"), decode_device=None,
                                  threads=8)
    require(torch.equal(train_gpu.stored_sizes, train_pil.stored_sizes), "training stores differ in sizes")
    train_mean = float((train_gpu.images.cpu().int() - train_pil.images.int()).abs().float().mean())
    require(train_mean < 2.0, f"training stores differ: mean |diff| {train_mean:.3f}")

    index = torch.arange(len(paths))[:16]
    on_gpu = BatchAugment("adv", crop, resize, convention, seed=5)(
        train_pil.images[index].to(DEVICE), train_pil.original_sizes[index], train_pil.stored_sizes[index])
    on_cpu = BatchAugment("adv", crop, resize, convention, seed=5)(
        train_pil.images[index], train_pil.original_sizes[index], train_pil.stored_sizes[index])
    aug_err = float((on_gpu.cpu() - on_cpu).abs().max())
    print(f"batch-wise adv augmentation, CUDA vs CPU from one seed: max |diff| {aug_err:.2e} (normalised units)")
    require(aug_err < 1e-2, "the device augmentation differs between CUDA and the CPU")

    summary = main_module.main(on_device(TINY_RUN + [
        "--source_path", tree, "--save_path", fresh(work, "store_runs"), "--n_epochs", "1", "--data_cache", "device",
        "--savename", "store"]))
    require(0.0 <= summary["last"]["test/e_recall@1"] <= 1.0, "the --data_cache device run gave no recall")
    passed("image_store", f"nvJPEG vs PIL mean |diff| {mean:.3f}, augmentation CUDA vs CPU {aug_err:.1e}, "
                          f"one epoch with --data_cache device")


# -- 3. evaluation on the device --------------------------------------------------------------------------------

def check_metrics(work: str) -> None:
    """Metrics of CUDA embeddings on the GPU against the torch backend on the CPU; embeddings stay on the GPU."""
    import evaluation

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(100), 59)
    # noise 2.2: mid-range values (on the CPU: Recall@1 0.68, MAP@R 0.17, NMI 0.94), where a wrong kNN shows;
    # at 0.9 every recall was 1.0
    x = rng.normal(size=(100, 128))[labels] + 2.2 * rng.normal(size=(len(labels), 128))
    x = torch.nn.functional.normalize(torch.tensor(x, dtype=torch.float32), dim=1)
    names = list(parameters.DEFAULT_EVALUATION_METRICS)
    start = time.perf_counter()
    on_gpu = metrics.compute_metrics(x.to(DEVICE), labels, names, backend="torch", device=DEVICE)
    gpu_seconds = time.perf_counter() - start
    on_cpu = metrics.compute_metrics(x, labels, names, backend="torch", device="cpu")
    worst = {k: abs(on_gpu[k] - on_cpu[k]) for k in names}
    print(f"{len(labels)} x 128 embeddings, 100 classes: GPU {gpu_seconds:.2f} s; " +
          ", ".join(f"{k} {on_gpu[k]:.4f}/{on_cpu[k]:.4f}" for k in names), flush=True)
    for key, gap in worst.items():
        require(gap <= (0.02 if key == "nmi" else 2e-3), f"{key}: GPU {on_gpu[key]} vs CPU {on_cpu[key]}")
    require_on_cuda(evaluation.metric_backend(parameters.parse([]), DEVICE) in (("torch", DEVICE), ("faiss_gpu", DEVICE)),
            "a CUDA run must compute its metrics on the GPU")

    model = architectures.select("slimresnet18_normalize", parameters.parse(["--not_pretrained"])).to(DEVICE)
    batches = [(torch.arange(8), torch.randn(8, 3, 32, 32, device=DEVICE), None) for _ in range(3)]
    features, _ = evaluation.embed(model, batches, DEVICE, ["embeds"], precision=Precision(DEVICE, torch.bfloat16),
                                   on_device=True)
    require(features["embeds"].dtype == torch.float32, "evaluation embeddings are not fp32")
    require_on_cuda(features["embeds"].device.type == "cuda", "evaluation embeddings left the GPU")
    passed("metrics", f"largest gap {max(worst.values()):.1e} (recall, MAP@R: 2e-3, NMI: 0.02)")


# -- 4. NaN stop and resume on CUDA ----------------------------------------------------------------------------

def check_nan_stop(work: str) -> None:
    """A NaN in the second step of epoch 2 (4 steps per epoch, read at the epoch's end on DEVICE) stops the run
    with that step named."""
    import contextlib
    import io

    from criteria.s2sd import S2SD

    tree = small_tree(work)
    forward = S2SD.forward

    def poisoned(self, *args, **kwargs):
        loss = forward(self, *args, **kwargs)
        return loss * float("nan") if int(self.iteration) == 6 else loss  # counted after the step's forward

    S2SD.forward = poisoned
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            main_module.main(on_device(TINY_RUN + ["--source_path", tree, "--save_path", fresh(work, "nan_runs"),
                                                   "--n_epochs", "3", "--savename", "nan", "--data_cache", "device"]))
    except SystemExit as stop:
        require(stop.code == 3, f"exit status {stop.code}, expected 3 (a diverged run)")
    else:
        raise AssertionError("a NaN loss did not stop the run")
    finally:
        S2SD.forward = forward
    line = next((l for l in stderr.getvalue().splitlines() if "error" in l), "")
    print(line, flush=True)
    require(line.startswith("main.py: error: loss became nan at epoch 2, step 2 (source ") and "feat_kl " in line,
            f"unexpected message: {line!r}")
    passed("nan_stop", "the run stopped naming epoch 2, step 2 and the loss terms")


def run_main(args, interrupt=(), expected=0):
    """main.py through tests/interrupt_run.py (with its `interrupt` flags), in its own process group, so a
    signal sent to the group reaches the run and its workers and nothing of this script."""
    command = [sys.executable, os.path.join(ROOT, "tests", "interrupt_run.py"), *interrupt, "--", *args]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, start_new_session=True)
    require(proc.returncode == expected, f"exit {proc.returncode}, expected {expected}: {proc.stderr[-1500:]}")


def require_same_run(reference_dir: str, run_dir: str, label: str) -> None:
    """Every logged value of the last epoch (time aside) and every weight of the model and the criterion in
    `run_dir` equal `reference_dir`'s, bit for bit."""
    summaries = [json.load(open(os.path.join(d, "summary.json"))) for d in (reference_dir, run_dir)]
    states = [torch.load(os.path.join(d, "checkpoint_last.pth.tar"), map_location="cpu", weights_only=True)
              for d in (reference_dir, run_dir)]
    for key, value in summaries[0]["last"].items():
        if key != "train/time":
            require(summaries[1]["last"][key] == value, f"{label}: {key} {summaries[1]['last'][key]} != {value}")
    for part in ("model", "criterion"):
        for key, tensor in states[0][part].items():
            gap = float((states[1][part][key].double() - tensor.double()).abs().max()) if tensor.numel() else 0.0
            require(gap == 0.0, f"{label}: {part}.{key} differs by up to {gap:.2e}")


def check_resume(work: str) -> None:
    """--deterministic on CUDA, with the store on the GPU and with persistent seeded streaming workers: a run
    killed (SIGKILL) after the first step of epoch 2 and resumed, and a run stopped by SIGTERM to its process
    group during that step (the background writer flushed, the step's checkpoint written, exit 75) and
    resumed, both end as the run never interrupted."""
    tree = small_tree(work)
    variants = (("store", ["--data_cache", "device"]), ("workers", ["--data_cache", "off", "--kernels", "2"]))
    interruptions = (("killed", ["--after-steps", "5"], -signal.SIGKILL),  # 4 steps per epoch: epoch 2, step 1
                     ("stopped", ["--signal-after-steps", "5", "--to-group"], EXIT_INTERRUPTED))
    for variant, flags in variants:
        base = on_device(TINY_RUN + flags + ["--deterministic", "--source_path", tree, "--n_epochs", "2",
                                             "--save_path", fresh(work, f"resume_{variant}")])
        run_dir = os.path.join(work, f"resume_{variant}", "cub200")
        run_main(base + ["--savename", "reference"])
        for name, interrupt, status in interruptions:
            run_main(base + ["--savename", name], interrupt, status)
            saved = torch.load(os.path.join(run_dir, name, "checkpoint_last.pth.tar"), map_location="cpu",
                               weights_only=True)
            position = (saved["epoch"], (saved["progress"] or {}).get("step"))
            require(position == ((0, None) if name == "killed" else (0, 1)),
                    f"{variant}, {name}: the checkpoint holds (epoch, step) {position}")
            run_main(["--checkpoint", os.path.join(run_dir, name)])
        for name, _, _ in interruptions:
            require_same_run(os.path.join(run_dir, "reference"), os.path.join(run_dir, name), f"{variant}, {name}")
        print(f"{variant}: the killed and the stopped run, resumed, equal the uninterrupted one (every logged value, "
              "every weight)", flush=True)
    passed("resume", "bit-exact with --deterministic after SIGKILL and after SIGTERM, store and streaming workers")


# -- 5. torchrun ------------------------------------------------------------------------------------------------

def check_ddp(work: str) -> None:
    """One process under torchrun (NCCL, DistributedDataParallel around backbone and criterion) trains what
    `python main.py` trains on the same seed: 4 steps of the tiny S2SD run with --deterministic, every logged
    value and every weight bit for bit."""
    tree = small_tree(work)
    base = on_device(TINY_RUN + ["--deterministic", "--data_cache", "device", "--source_path", tree, "--n_epochs",
                                 "1", "--save_path", fresh(work, "ddp")])
    launches = {"plain": [sys.executable, "main.py"],
                "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                             "main.py"]}
    for name, launch in launches.items():
        proc = subprocess.run(launch + base + ["--savename", name], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        require(proc.returncode == 0, f"{name}: exit {proc.returncode}: {proc.stderr[-1500:]}")
    run_dir = os.path.join(work, "ddp", "cub200")
    require_same_run(os.path.join(run_dir, "plain"), os.path.join(run_dir, "torchrun"), "torchrun")
    passed("ddp", "torchrun --nproc_per_node 1 equals python main.py bit for bit (--deterministic)")


# -- 6. where a step's time goes ---------------------------------------------------------------------------------

def check_profile(work: str) -> None:
    """The recipe's training step (ResNet-50 at 224 px, bs 112, S2SD with four heads and feature distillation,
    bf16, channels-last, fused Adam) on random images, without the data pipeline: its time, how often it waits
    for the GPU (host syncs per step, each attributed to its line, from CUDA's sync debug mode) and its top
    kernels (torch.profiler). A diagnosis for when the benchmark misses its goal; it passes whenever it runs.
    A rehearsal profiles the tiny variant on the CPU."""
    import collections
    import warnings

    from benchmarks import recipe_speed
    from utilities.training import TrainingStep

    flags = recipe_speed.RECIPE + (recipe_speed.TINY if REHEARSAL else []) + ["--device", "cuda"]
    opt = parameters.parse(on_device(flags))
    size = opt.resolution or 224
    torch.manual_seed(0)
    model = architectures.select(opt.arch, opt).to(DEVICE)
    criterion = criteria.from_opt("s2sd", opt, n_classes=opt.bs // 2, feature_dim=model.feature_dim).to(DEVICE)
    precision = Precision.build(opt, DEVICE, model)
    precision.prepare_model(model)
    optimizer = main_module.build_optimizer(opt, model, criterion, DEVICE)[0]
    step = TrainingStep(model, criterion, precision)
    images = torch.randn(opt.bs, 3, size, size, device=DEVICE)
    labels = torch.arange(opt.bs // 2, device=DEVICE).repeat_interleave(2)
    cuda = DEVICE.type == "cuda"

    def train_step():
        loss, _ = step(precision.prepare_images(images), labels)
        precision.backward_and_step(loss, optimizer)

    def wait():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(5):  # cuDNN autotuning, allocator warm-up
        train_step()
    wait()
    steps = 10
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    wait()
    step_ms = 1000 * (time.perf_counter() - start) / steps
    print(f"{opt.arch} {size}px bs {opt.bs} on {DEVICE.type}: {step_ms:.1f} ms per step, "
          f"{1000 * opt.bs / step_ms:.0f} img/s (model and loss only, no data pipeline)", flush=True)

    syncs = collections.Counter()
    if cuda:
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                train_step()
        torch.cuda.set_sync_debug_mode("default")
        for warning in caught:
            if "synchroniz" in str(warning.message):
                syncs[f"{os.path.relpath(warning.filename, ROOT)}:{warning.lineno}"] += 1
        print(f"host syncs per step: {sum(syncs.values()) / 3:.1f}", flush=True)
        for where, count in syncs.most_common():
            print(f"    {count / 3:.1f}  {where}")
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as profile:
        for _ in range(3):
            train_step()
        wait()
    sort = "cuda_time_total" if cuda else "cpu_time_total"
    print(profile.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=60), flush=True)
    synced = f"{sum(syncs.values()) / 3:.1f} host syncs per step, " if cuda else ""
    passed("profile", f"{step_ms:.1f} ms per step ({1000 * opt.bs / step_ms:.0f} img/s), {synced}top kernels in the log")


# -- the final table ---------------------------------------------------------------------------------------------

CHECKS = {"bf16_step": check_bf16_step, "fp16_scaler": check_fp16_scaler, "image_store": check_image_store,
          "metrics": check_metrics, "nan_stop": check_nan_stop, "resume": check_resume, "ddp": check_ddp,
          "profile": check_profile}


def summary(logs: str) -> None:
    print("\n==== GPU check ====")
    for name in CHECKS:
        path = os.path.join(logs, f"{name}.log")
        if not os.path.exists(path):
            print(f"{name:14s} NOT RUN")
            continue
        lines = open(path, errors="replace").read().splitlines()
        verdict = next((line for line in lines if line.startswith(("CHECK ", "SKIP"))), None)
        print(f"{name:14s} {verdict or 'FAIL: ' + (lines[-1] if lines else 'no output')}")
    path = os.path.join(logs, "recipe_speed.json")
    if not os.path.exists(path):
        print("recipe benchmark: FAILED (see recipe_speed.log)")
        return
    report = json.load(open(path))
    new, old = report["this_branch"], report["items_1_to_4_off"]
    print(f"training img/s                 {new['train_img_s']:.0f}  (items 1-4 off: {old['train_img_s']:.0f})")
    print(f"ratio to model-only            {new['ratio_to_model_only']:.2f}  (goal >= 0.85; "
          f"model-only {new['model_only_img_s']:.0f} img/s)")
    print(f"evaluation s/epoch             {new['eval_s']:.2f}  (items 1-4 off: {old['eval_s']:.2f})")
    print(f"host s/epoch                   {new['host_s']:.2f}  (items 1-4 off: {old['host_s']:.2f})")
    minutes, old_minutes = new["projected_150_epochs_min"], old["projected_150_epochs_min"]
    print(f"projected 150-epoch minutes    {minutes:.1f}  (goal <= 15; items 1-4 off: {old_minutes:.1f}, "
          f"gain {old_minutes / minutes:.2f}x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=[*CHECKS, "summary"])
    parser.add_argument("--work", default="/tmp/s2sd_gpu_check")
    parser.add_argument("--logs", default=None)
    parser.add_argument("--rehearse", action="store_true", help="run the check on the CPU (see the module docstring)")
    args = parser.parse_args()
    if args.check == "summary":
        summary(args.logs)
        return
    os.environ.setdefault("WANDB_MODE", "disabled")
    global DEVICE, REHEARSAL
    if args.rehearse:
        DEVICE, REHEARSAL = torch.device("cpu"), True
    else:
        require(torch.cuda.is_available(), "no CUDA device")
    os.makedirs(args.work, exist_ok=True)
    CHECKS[args.check](args.work)


if __name__ == "__main__":
    main()
