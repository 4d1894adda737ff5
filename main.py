"""Train and evaluate a deep metric learning model: `python main.py --loss s2sd ...` (see README.md).

`main(argv)` parses the flags, builds data, backbone, criterion and optimizer from their registries, trains
for --n_epochs, evaluates every epoch, and returns the summary it also writes to `<run>/summary.json`.
Bad input ends with one line on stderr and exit status 2.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader

import architectures
import criteria
import datasets
import evaluation
import parameters
from utilities import online
from utilities.checkpoint import best_checkpoint_name, save_atomic
from utilities.device import resolve_device
from utilities.errors import UsageError
from utilities.logger import PROTOCOLS, RunLogger, epoch_line, summary_key
from utilities.run_folder import jsonable_options, make_run_dir, run_name, write_parameters
from utilities.seeding import seed_everything, worker_init
from utilities.training import train_one_epoch


def build_optimizer(opt, model, criterion):
    groups = [g for g in model.param_groups(opt) + criterion.param_groups() if g["params"]]
    if opt.optim == "sgd":
        optimizer = torch.optim.SGD(groups, lr=opt.lr, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(groups, lr=opt.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=opt.tau, gamma=opt.gamma) \
        if opt.scheduler == "step" else None
    return optimizer, scheduler


def build_loaders(opt, splits: dict, device) -> dict:
    """The training loader (batch sampler) and, per evaluated split, {"query": loader[, "gallery": loader]}."""
    workers = 0 if splits["training"].in_memory else min(opt.kernels, os.cpu_count() or 1)
    common = dict(num_workers=workers, pin_memory=device.type == "cuda", worker_init_fn=worker_init,
                  persistent_workers=workers > 0, generator=torch.Generator().manual_seed(opt.seed))
    sampler = datasets.select_sampler(opt.data_sampler, splits["training"], opt)
    loaders = {"training": DataLoader(splits["training"], batch_sampler=sampler, **common)}
    for split, sets in evaluation.evaluated_sets(splits, include_train=not opt.no_train_metrics).items():
        loaders[split] = {role: DataLoader(dataset, batch_size=opt.bs, shuffle=False, **common)
                          for role, dataset in sets.items()}
    return loaders


def describe(opt, splits, model, device) -> str:
    n_weights = sum(p.numel() for p in model.parameters() if p.requires_grad)
    objective = opt.loss.upper()
    if opt.loss == "s2sd":
        objective += f" (source {opt.loss_s2sd_source}, target {opt.loss_s2sd_target} x {opt.loss_s2sd_target_dims})"
    miner = opt.batch_mining if criteria.requires_batchminer(opt.loss) or (
        opt.loss == "s2sd" and (criteria.requires_batchminer(opt.loss_s2sd_source)
                                or criteria.requires_batchminer(opt.loss_s2sd_target))) else "N/A"
    sizes = " | ".join(f"{k} {len(v)} images / {v.n_classes} classes" for k, v in splits.items() if k != "evaluation")
    return "\n".join([
        f"Dataset:\t {opt.dataset.upper()} ({sizes})",
        f"Objective:\t {objective}",
        f"Batchminer:\t {miner}",
        f"Backbone:\t {opt.arch.upper()} (#weights: {n_weights})",
        f"Device:\t\t {device}",
        "-----",
    ])


def train(opt) -> dict:
    device = resolve_device(opt)
    seed_everything(opt.seed)
    splits = datasets.select(opt.dataset, opt, opt.source_path)
    opt.n_classes = splits["training"].n_classes
    model = architectures.select(opt.arch, opt).to(device)
    opt.feature_dim = model.feature_dim
    criterion = criteria.select(opt.loss, opt).to(device)
    optimizer, scheduler = build_optimizer(opt, model, criterion)
    loaders = build_loaders(opt, splits, device)

    run_dir = make_run_dir(opt)
    write_parameters(run_dir, opt)
    online_run = online.start(opt, run_dir, run_name(opt))
    logger = RunLogger(run_dir, online_run)
    print(describe(opt, splits, model, device), flush=True)

    storage_split = "Val" if "Val" in loaders else "Test"
    train_seconds = 0.0
    for epoch in range(opt.n_epochs):
        stats = train_one_epoch(model, criterion, optimizer, loaders["training"], device, epoch)
        train_seconds += stats["seconds"]
        logger.log_group("Train", "loss", {k: v for k, v in stats.items() if k not in ("seconds", "degenerate_steps")}, epoch)
        logger.log_group("Train", "degenerate_steps", {"degenerate_steps": stats["degenerate_steps"]}, epoch)
        logger.log_group("Train", "time", {"time": stats["seconds"]}, epoch)

        eval_start = time.time()
        results = {}
        for split in ("Test", "Val", "Train"):
            if split in loaders:
                results[split] = evaluation.evaluate_split(model, loaders[split], device, opt, desc=f"Embedding {split} Data")
                logger.log_metrics(split, results[split], epoch)
        eval_seconds = time.time() - eval_start
        logger.flush_online(epoch)
        print(epoch_line(epoch, opt.n_epochs, stats["loss"], results, stats["seconds"], eval_seconds), flush=True)

        for evaltype in opt.evaltypes:
            for metric in opt.storage_metrics:
                if logger.is_best(summary_key(storage_split, evaltype, metric)):
                    save_atomic({"model": model.state_dict(), "criterion": criterion.state_dict(), "epoch": epoch,
                                 "opt": jsonable_options(opt), "metric": metric,
                                 "value": results[storage_split][evaltype][metric]},
                                os.path.join(run_dir, best_checkpoint_name(storage_split, evaltype, metric)))
        if scheduler is not None:
            scheduler.step()

    summary = {"best": logger.best(), "last": logger.last(), "protocols": PROTOCOLS, "epochs": opt.n_epochs,
               "train_seconds": train_seconds, "run_dir": run_dir}
    logger.write_summary(summary)
    if online_run is not None:
        online_run.finish()
    print(f"Run folder: {run_dir}", flush=True)
    return summary


def main(argv: Optional[Sequence[str]] = None) -> dict:
    opt = parameters.parse(argv)
    try:
        return train(opt)
    except UsageError as err:
        sys.stderr.write(f"main.py: error: {err}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
