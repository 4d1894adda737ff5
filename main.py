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

import architectures
import criteria
import datasets
import evaluation
import metrics
import parameters
from datasets import loading
from utilities import embedding_map, online, progression_plots, resume, retrieval_grid
from utilities.async_checkpoint import CheckpointWriter
from utilities.checkpoint import best_checkpoint_name
from utilities.device import resolve_device
from utilities.errors import UsageError
from utilities.logger import PROTOCOLS, RunLogger, epoch_line, summary_key
from utilities.precision import Precision, compile_modules, configure_kernels, deterministic, keep_kernel_options, \
    optimizer_options
from utilities.run_folder import jsonable_options, make_run_dir, run_name, write_parameters
from utilities.seeding import seed_everything
from utilities.training import TrainingDiverged, train_one_epoch


def build_optimizer(opt, model, criterion, device=torch.device("cpu")):
    groups = [g for g in model.param_groups(opt) + criterion.param_groups() if g["params"]]
    if opt.optim == "sgd":
        optimizer = torch.optim.SGD(groups, lr=opt.lr, momentum=0.9, **optimizer_options(torch.optim.SGD, device))
    else:
        optimizer = torch.optim.Adam(groups, lr=opt.lr, **optimizer_options(torch.optim.Adam, device))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=opt.tau, gamma=opt.gamma) \
        if opt.scheduler == "step" else None
    return optimizer, scheduler


def build_loaders(opt, splits: dict, device) -> dict:
    """The training loader and, per evaluated split, {"query": loader[, "gallery": loader]} (datasets/loading.py:
    the decoded-image store or streaming workers, per --data_cache)."""
    return loading.build_loaders(opt, splits, device)


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


def draw_pictures(opt, run_dir: str, epoch: int, test_split, test_features, queries) -> None:
    """The progression plots of every logged group, and the retrieval grid of `queries` in the test split."""
    progression_plots.draw_all(run_dir)
    if len(queries):
        retrieval_grid.draw(os.path.join(run_dir, "Retrieval_Grids", f"Test_epoch_{epoch:03d}.png"), test_split,
                            *test_features, queries, opt.retrieval_k, f"Test retrieval after epoch {epoch + 1}/{opt.n_epochs}")


def due(epoch: int, every: Optional[int], n_epochs: int) -> bool:
    """Whether a task done every `every` epochs (None or 0: only after the last) falls after `epoch` (0-based)."""
    return epoch + 1 == n_epochs or bool(every) and (epoch + 1) % every == 0


def train(opt, resumed: Optional[resume.Resumed] = None) -> dict:
    device = resolve_device(opt)
    seed_everything(opt.seed)
    configure_kernels(device, deterministic(opt, device))
    splits = datasets.select(opt.dataset, opt, opt.source_path)
    opt.n_classes = splits["training"].n_classes
    model = architectures.select(opt.arch, opt).to(device)
    opt.feature_dim = model.feature_dim
    criterion = criteria.select(opt.loss, opt).to(device)
    precision = Precision.build(opt, device, model)
    precision.prepare_model(model)
    optimizer, scheduler = build_optimizer(opt, model, criterion, device)
    loaders = build_loaders(opt, splits, device)
    parts = dict(model=model, criterion=criterion, optimizer=optimizer, scheduler=scheduler, loader=loaders["training"])
    start_epoch = resume.restore(resumed.state, **parts, precision=precision) if resumed else 0
    keep_kernel_options(optimizer, optimizer_options(type(optimizer), device))
    if opt.dry_run:
        print(describe(opt, splits, model, device), flush=True)
        where = f"; --checkpoint would continue {resumed.run_dir} at epoch {start_epoch + 1}" if resumed else ""
        print(f"Dry run: data, model, criterion and optimizer built; nothing trained{where}.", flush=True)
        return {"dry_run": True, "best": {}, "last": {}, "epochs": 0, "train_seconds": 0.0, "run_dir": None}

    run_dir = resumed.run_dir if resumed else make_run_dir(opt)
    write_parameters(run_dir, opt)
    logger = RunLogger(run_dir)
    train_seconds, online_ref = 0.0, {"name": run_name(opt)}
    if resumed:
        resume.remove_partial_writes(run_dir)
        logger.restore(resumed.state["history"], start_epoch - 1)
        train_seconds, online_ref = resumed.state["train_seconds"], resumed.state["online"] or online_ref
        print(f"Resuming {run_dir} from {os.path.basename(resumed.path)} at epoch {start_epoch + 1}/{opt.n_epochs}",
              flush=True)
    online_run = online.start(opt, run_dir, online_ref["name"], run_id=online_ref.get("id"))
    if online_run is not None:
        online_ref = {"name": online_ref["name"], "id": online_run.id}
    logger.online = online_run
    print(describe(opt, splits, model, device), flush=True)
    stores = loading.prepare(loaders)
    if stores:
        print(stores, flush=True)
    if opt.compile:
        compile_modules(model, criterion)

    storage_split = "Val" if "Val" in loaders else "Test"
    last_path = os.path.join(run_dir, resume.LAST_CHECKPOINT)
    # The retrieval grid ranks a split against itself; query/gallery datasets (In-Shop) get no grid.
    test_split = splits.get("testing")
    queries = retrieval_grid.pick_queries(len(test_split) if test_split is not None else 0, opt.retrieval_queries,
                                          opt.seed)
    test_features = None
    writer = CheckpointWriter()  # the `last` and best checkpoints are written in the background
    for epoch in range(start_epoch, opt.n_epochs):
        try:
            stats = train_one_epoch(model, criterion, optimizer, loaders["training"], device, epoch, precision)
        except TrainingDiverged as err:
            writer.close()
            kept = f"the last good checkpoint is {last_path}" if os.path.exists(last_path) else "no epoch completed"
            raise TrainingDiverged(f"{err}; stopped, {kept}") from None
        train_seconds += stats["seconds"]
        logger.log_group("Train", "loss", {k: v for k, v in stats.items() if k not in ("seconds", "degenerate_steps")}, epoch)
        logger.log_group("Train", "degenerate_steps", {"degenerate_steps": stats["degenerate_steps"]}, epoch)
        logger.log_group("Train", "time", {"time": stats["seconds"]}, epoch)
        logger.log_online({"Train: epochs": epoch})

        eval_start = time.time()
        results = {}
        for split in ("Test", "Val", "Train"):
            if split in loaders and (split != "Train" or due(epoch, opt.train_eval_every, opt.n_epochs)):
                results[split], features, labels = evaluation.embed_and_score(
                    model, loaders[split], device, opt, desc=f"Embedding {split} Data", precision=precision)
                logger.log_metrics(split, results[split], epoch)
                if split == "Test":
                    test_features = (metrics.as_numpy(features[opt.evaltypes[0]]), labels)
        eval_seconds = time.time() - eval_start
        logger.flush_online(epoch)
        print(epoch_line(epoch, opt.n_epochs, stats["loss"], results, stats["seconds"], eval_seconds), flush=True)

        writer.wait()  # the previous epoch's checkpoints are on disk before this epoch's are queued
        for evaltype in opt.evaltypes:
            for metric in opt.storage_metrics:
                if logger.is_best(summary_key(storage_split, evaltype, metric)):
                    writer.save({"model": model.state_dict(), "epoch": epoch, "opt": jsonable_options(opt),
                                 "metric": metric, "value": results[storage_split][evaltype][metric]},
                                os.path.join(run_dir, best_checkpoint_name(storage_split, evaltype, metric)))
        if scheduler is not None:
            scheduler.step()
        if opt.plot_every != 0 and due(epoch, opt.plot_every, opt.n_epochs):
            draw_pictures(opt, run_dir, epoch, test_split, test_features, queries)
        if due(epoch, opt.checkpoint_every, opt.n_epochs):
            writer.save(resume.training_state(epoch=epoch, **parts, history=logger.history, train_seconds=train_seconds,
                                              opt_dict=jsonable_options(opt), online=online_ref, precision=precision),
                        last_path)

    if opt.tsne_points and "Test" in loaders:
        if test_features is None:
            features, labels, _, _ = evaluation.embed_split(model, loaders["Test"], device, opt, "Embedding Test Data",
                                                            precision)
            test_features = (metrics.as_numpy(features[opt.evaltypes[0]]), labels)
        if len(test_features[1]) >= 3:
            embedding_map.draw(run_dir, "Test", *test_features, opt.tsne_points, opt.seed)

    writer.close()
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
        resumed = resume.prepare(opt, argv) if opt.checkpoint else None
        return train(resumed.opt if resumed else opt, resumed)
    except UsageError as err:
        sys.stderr.write(f"main.py: error: {err}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
