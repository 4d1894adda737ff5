"""Train and evaluate a deep metric learning model: `python main.py --loss s2sd ...` (see README.md).

`main(argv)` parses the flags, builds data, backbone, criterion and optimizer from their registries, trains
for --n_epochs, evaluates every epoch (evaluation/epoch.py), and returns the summary it also writes to
`<run>/summary.json`. Bad input ends with one line on stderr and exit status 2, a diverged loss with one line
and exit status 3, SIGTERM or SIGINT with a saved checkpoint, one line saying how to resume and exit status 75
(utilities/errors.py, utilities/preemption.py). One run at a time writes in a run folder (utilities/run_lock.py).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Optional, Sequence

import torch

import architectures
import criteria
import datasets
import evaluation
import parameters
from datasets import loading
from evaluation import progression_plots
from evaluation.epoch import evaluate_epoch, final_test_embedding, keep_best
from evaluation.logger import PROTOCOLS, RunLogger, epoch_line
from evaluation.splits import display_name
from utilities import distributed, embedding_map, online, resume, retrieval_grid, stack_dumps
from utilities.async_checkpoint import CheckpointWriter
from utilities.checkpoint import save_atomic
from utilities.device import resolve_device
from utilities.errors import EXIT_DIVERGED, EXIT_LOST_PROCESS, EXIT_USAGE, Interrupted, TrainingDiverged, \
    UsageError
from utilities.precision import Precision, compile_modules, configure_kernels, deterministic, keep_kernel_options, \
    optimizer_options
from utilities.preemption import StopSignals
from utilities.run_folder import check_save_path, jsonable_options, make_run_dir, run_name, write_parameters
from utilities.run_lock import RunLock
from utilities.seeding import seed_everything
from utilities.training import EpochInterrupted, EpochProgress, TrainingStep, check_interval, embedding_storage, \
    train_one_epoch


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
    """The training loader and, per evaluated split (`testing`, ...), {"query": loader[, "gallery": loader]},
    and for a sampler with an embedding storage `storage`, the training images with evaluation transforms
    (datasets/loading.py: the decoded-image store or streaming workers, per --data_cache)."""
    return loading.build_loaders(opt, splits, device)


def embed_training_set(model, loaders, device, precision: Precision) -> torch.Tensor:
    """The embeddings of all training images under the evaluation transforms, in dataset order (for the
    storage), embedded as evaluation embeds (under `precision`) and left on `device`."""
    embeddings, _ = evaluation.embed(model, loaders["storage"], device, ["embeds"], desc="Embedding Storage",
                                     precision=precision, on_device=True)
    return embeddings["embeds"]


def describe(opt, splits, model, criterion, device) -> str:
    processes = distributed.current()
    n_weights = sum(p.numel() for p in model.parameters() if p.requires_grad)
    miners = sorted(set(criterion.miner_names()))
    sizes = " | ".join(f"{k} {len(v)} images / {v.n_classes} classes" for k, v in splits.items() if k != "evaluation")
    return "\n".join([
        f"Dataset:\t {opt.dataset.upper()} ({sizes})",
        f"Objective:\t {criterion.describe()}",
        f"Batchminer:\t {', '.join(miners) or 'N/A'}",
        f"Backbone:\t {opt.arch.upper()} (#weights: {n_weights})",
        f"Device:\t\t {device}" + (f" x {processes.world_size} processes (torchrun)" if processes.several else ""),
        "-----",
    ])


def draw_pictures(opt, run_dir: str, epoch: int, test_split, test_embedding, queries) -> None:
    """The progression plots of every logged group, and the retrieval grid of `queries` in the test split."""
    progression_plots.draw_all(run_dir)
    if len(queries):
        shown = display_name("testing")
        retrieval_grid.draw(os.path.join(run_dir, "Retrieval_Grids", f"{shown}_epoch_{epoch:03d}.png"), test_split,
                            *test_embedding, queries, opt.retrieval_k, f"{shown} retrieval after epoch {epoch + 1}/{opt.n_epochs}")


def due(epoch: int, every: Optional[int], n_epochs: int) -> bool:
    """Whether a task done every `every` epochs (None or 0: only after the last) falls after `epoch` (0-based)."""
    return epoch + 1 == n_epochs or bool(every) and (epoch + 1) % every == 0


def train(opt, resumed: Optional[resume.Resumed] = None, stop: Optional[StopSignals] = None) -> dict:
    """Build everything, then train in a new run folder (or `resumed`'s, whose lock the caller holds).
    `stop`: the SIGTERM/SIGINT handling of `main` (none: the run is never asked to stop)."""
    stop = stop or StopSignals()
    processes = distributed.current()
    device = processes.device
    if not resumed:
        check_save_path(opt.save_path, opt.dataset)
    seed_everything(opt.seed)
    configure_kernels(device, deterministic(opt, device))
    splits = datasets.select(opt.dataset, opt, opt.source_path)
    n_classes = splits["training"].n_classes
    model = architectures.select(opt.arch, opt).to(device)
    criterion = criteria.from_opt(opt.loss, opt, n_classes=n_classes, feature_dim=model.feature_dim).to(device)
    precision = Precision.build(opt, device, model)
    precision.prepare_model(model)
    optimizer, scheduler = build_optimizer(opt, model, criterion, device)
    distributed.seed_process(opt.seed)  # under several processes, each draws its own augmentations from here on
    loaders = build_loaders(opt, splits, device)
    randomness = distributed.loss_randomness(opt.seed, device)
    step = distributed.parallel(TrainingStep(model, criterion, precision, global_batch=processes.several,
                                             randomness=randomness), opt.sync_bn)
    parts = dict(model=model, criterion=criterion, optimizer=optimizer, scheduler=scheduler, loader=loaders["training"],
                 randomness=randomness)
    start_epoch, progress = resume.restore(resumed.state, **parts, precision=precision) if resumed else (0, None)
    keep_kernel_options(optimizer, optimizer_options(type(optimizer), device))
    if opt.dry_run:
        print(describe(opt, splits, model, criterion, device), flush=True)
        where = f"; --checkpoint would continue {resumed.run_dir} at {position(start_epoch, progress, opt)}" \
            if resumed else ""
        print(f"Dry run: data, model, criterion and optimizer built; nothing trained{where}.", flush=True)
        return {"dry_run": True, "best": {}, "last": {}, "epochs": 0, "train_seconds": 0.0, "run_dir": None}

    stores = loading.prepare(loaders)  # decoding is part of the set-up: a stop signal during it stops at once
    if stores:
        print(stores, flush=True)
    if opt.compile:
        compile_modules(model, criterion)
    storage = embedding_storage(loaders["training"])
    if storage is not None and not resumed:  # a resumed run has it from its checkpoint
        storage.fill(embed_training_set(model, loaders, device, precision))
    stop.defer()  # from here on a stop signal waits for a step to end, and the run saves before it stops
    if resumed:
        return run(opt, resumed.run_dir, splits, loaders, parts, step, precision, stop, resumed, start_epoch,
                   progress)
    run_dir = distributed.from_main(make_run_dir(opt) if processes.is_main else None)
    with RunLock(run_dir) if processes.is_main else contextlib.nullcontext():
        return run(opt, run_dir, splits, loaders, parts, step, precision, stop)


def agreed_signal(stop: StopSignals) -> int:
    """The signal the run stops on; under several processes the one that reached any of them (a collective)."""
    return int(distributed.rank_max(stop.signum or 0))


def position(epoch: int, progress: Optional[EpochProgress], opt) -> str:
    """`epoch 3/10`, or `epoch 3/10, step 5` when a checkpoint was written after step 4 of epoch 3."""
    return f"epoch {epoch + 1}/{opt.n_epochs}" + (f", step {progress.step + 1}" if progress else "")


def run(opt, run_dir: str, splits: dict, loaders: dict, parts: dict, step, precision: Precision, stop: StopSignals,
        resumed: Optional[resume.Resumed] = None, start_epoch: int = 0,
        progress: Optional[EpochProgress] = None) -> dict:
    """Train and evaluate from `start_epoch` (and `progress` into it) to --n_epochs in `run_dir`, logging every
    epoch and checkpointing every --checkpoint_every epochs; stop at the first safe point after a stop signal
    (`Interrupted`), with a checkpoint of that point. `step` computes a batch's loss (utilities/training.py,
    in DistributedDataParallel under torchrun). Under several processes every one trains and embeds its
    share, and rank 0 alone writes (`writes`); every decision to stop is taken together."""
    model, criterion, optimizer, scheduler = parts["model"], parts["criterion"], parts["optimizer"], parts["scheduler"]
    n_classes = splits["training"].n_classes
    storage = embedding_storage(loaders["training"])
    device = distributed.current().device
    writes = distributed.current().is_main
    if writes:
        write_parameters(run_dir, opt)
    logger = RunLogger(run_dir, write=writes)
    train_seconds, online_ref = 0.0, {"name": run_name(opt)}
    if resumed:
        if writes:
            resume.remove_partial_writes(run_dir)
        logger.restore(resumed.state["history"], start_epoch - 1)
        train_seconds, online_ref = resumed.state["train_seconds"], resumed.state["online"] or online_ref
        print(f"Resuming {run_dir} from {os.path.basename(resumed.path)} at {position(start_epoch, progress, opt)}",
              flush=True)
    online_run = online.start(opt, run_dir, online_ref["name"], run_id=online_ref.get("id")) if writes else None
    if online_run is not None:
        online_ref = {"name": online_ref["name"], "id": online_run.id}
    logger.online = online_run
    print(describe(opt, splits, model, criterion, device), flush=True)

    last_path = os.path.join(run_dir, resume.LAST_CHECKPOINT)

    def last_state(epoch: int, within: Optional[EpochProgress] = None) -> Optional[dict]:
        """The `last` checkpoint on rank 0, None elsewhere (a collective: it holds every process's random states)."""
        return resume.gather_training_state(epoch=epoch, **parts, history=logger.history, train_seconds=train_seconds,
                                            opt_dict=jsonable_options(opt), online=online_ref, progress=within,
                                            precision=precision)

    def save_last_now(epoch: int, within: Optional[EpochProgress] = None) -> None:
        """Before the run stops: after every background write, so none of them lands on top of this one."""
        writer.close()
        state = last_state(epoch, within)
        if writes:
            save_atomic(state, last_path)
        distributed.barrier()  # no process leaves (and has torchrun stop the others) before the checkpoint is on disk

    # The retrieval grid ranks a split against itself; query/gallery datasets (In-Shop) get no grid.
    test_split = splits.get("testing")
    queries = retrieval_grid.pick_queries(len(test_split) if test_split is not None else 0, opt.retrieval_queries,
                                          opt.seed)
    test_embedding = None
    writer = CheckpointWriter()  # the end-of-epoch `last` and best checkpoints are written in the background
    for epoch in range(start_epoch, opt.n_epochs):
        continued = progress is not None and epoch == start_epoch  # its storage refresh is in the checkpoint
        if storage is not None and storage.refresh_each_epoch and epoch > 0 and not continued:
            storage.refresh(embed_training_set(model, loaders, device, precision))
        try:
            within = progress if continued else EpochProgress.starting(loaders["training"])
            stats = train_one_epoch(model, criterion, optimizer, loaders["training"], device, epoch, within,
                                    distributed.agreed(lambda: stop.requested, check_interval(device)),
                                    precision=precision, step=step)
        except TrainingDiverged as err:
            writer.close()
            kept = f"the last good checkpoint is {last_path}" if os.path.exists(last_path) else "no epoch completed"
            raise TrainingDiverged(f"{err}; stopped, {kept}") from None
        except EpochInterrupted as interrupted:
            save_last_now(epoch - 1, interrupted.progress)
            where = f"at epoch {epoch + 1}/{opt.n_epochs}, step {interrupted.progress.step}/{len(loaders['training'])}"
            raise Interrupted(agreed_signal(stop), where, last_path) from None
        stats = distributed.reduce_epoch_stats(stats)
        train_seconds += stats["seconds"]
        logger.log_group("training", "loss", {k: v for k, v in stats.items() if k not in ("seconds", "degenerate_steps")}, epoch)
        logger.log_group("training", "degenerate_steps", {"degenerate_steps": stats["degenerate_steps"]}, epoch)
        logger.log_group("training", "time", {"time": stats["seconds"]}, epoch)
        logger.log_epoch_number(epoch)

        eval_start = time.time()
        distributed.share_buffers(model)
        results, test_embedding = evaluate_epoch(model, loaders, device, opt, logger, epoch, n_classes, precision,
                                                 evaluate_training=due(epoch, opt.train_eval_every, opt.n_epochs))
        eval_seconds = time.time() - eval_start
        logger.flush_online(epoch)
        print(epoch_line(epoch, opt.n_epochs, stats["loss"], results, stats["seconds"], eval_seconds), flush=True)

        writer.wait()  # the previous epoch's checkpoints are on disk before this epoch's are queued
        if writes:
            keep_best(logger, results, run_dir, opt, model=model, epoch=epoch, writer=writer)
        if scheduler is not None:
            scheduler.step()
        if writes and opt.plot_every != 0 and due(epoch, opt.plot_every, opt.n_epochs):
            draw_pictures(opt, run_dir, epoch, test_split, test_embedding, queries)
        if distributed.any_rank(stop.requested):
            save_last_now(epoch)
            raise Interrupted(agreed_signal(stop), f"after epoch {epoch + 1}/{opt.n_epochs}", last_path)
        if due(epoch, opt.checkpoint_every, opt.n_epochs):
            state = last_state(epoch)
            if writes:
                writer.save(state, last_path)

    if opt.tsne_points:
        test_embedding = final_test_embedding(model, loaders, device, opt, test_embedding, precision)
        if writes and test_embedding is not None and len(test_embedding[1]) >= 3:
            embedding_map.draw(run_dir, display_name("testing"), *test_embedding, opt.tsne_points, opt.seed)

    writer.close()
    summary = {"best": logger.best(), "last": logger.last(), "protocols": PROTOCOLS, "epochs": opt.n_epochs,
               "train_seconds": train_seconds, "run_dir": run_dir}
    logger.write_summary(summary)
    if online_run is not None:
        online_run.finish()
    print(f"Run folder: {run_dir}", flush=True)
    return distributed.from_main(summary)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Under torchrun (README "Several GPUs") every process runs this; rank 0 alone prints and writes, and
    the errors that all processes meet together (a NaN stop, a stop signal) are reported by rank 0 only."""
    stack_dumps.enable()  # kill -USR1 <pid>: every thread's stack on stderr (a run that seems stuck)
    opt = parameters.parse(argv)
    processes = distributed.current()  # this process's rank, kept for the reports below (after the teardown)
    try:
        with StopSignals() as stop, contextlib.ExitStack() as context:
            resumed = resume.prepare(opt, argv, parameters.build_parser()) if opt.checkpoint else None
            processes = distributed.setup(resumed.opt if resumed else opt, resolve_device)
            context.callback(distributed.teardown)
            if not processes.is_main:
                context.enter_context(contextlib.redirect_stdout(context.enter_context(open(os.devnull, "w"))))
            elif resumed and not resumed.opt.dry_run:
                context.enter_context(RunLock(resumed.run_dir))  # before anything is built, let alone written
            return train(resumed.opt if resumed else opt, resumed, stop)
    except UsageError as err:
        sys.stderr.write(f"main.py: error: {err}\n")
        raise SystemExit(EXIT_USAGE) from None
    except TrainingDiverged as err:
        if processes.is_main:
            sys.stderr.write(f"main.py: error: {err}\n")
        raise SystemExit(EXIT_DIVERGED) from None
    except RuntimeError as err:
        if not (processes.several and distributed.lost_contact(err)):
            raise
        sys.stderr.write(f"main.py: error: process {processes.rank} of {processes.world_size} lost the others "
                         f"({str(err).strip().splitlines()[0][:160]}): another process died or hung, see its "
                         f"output; resume from the run's last checkpoint with --checkpoint\n")
        raise SystemExit(EXIT_LOST_PROCESS) from None
    except Interrupted as err:
        if not processes.is_main:
            raise SystemExit(err.exit_status) from None
        if err.checkpoint is None and opt.checkpoint and not opt.dry_run:
            err.checkpoint = opt.checkpoint  # stopped while setting up a resumed run: its checkpoint is untouched
        if err.checkpoint:
            run_dir = err.checkpoint if os.path.isdir(err.checkpoint) else os.path.dirname(err.checkpoint)
            launcher = "torchrun ... main.py" if distributed.launched_by_torchrun() else "python main.py"
            sys.stderr.write(f"main.py: {err}; saved in {err.checkpoint}; resume with: "
                             f"{launcher} --checkpoint {run_dir}\n")
        else:
            sys.stderr.write(f"main.py: {err}; nothing to resume\n")
        raise SystemExit(err.exit_status) from None


if __name__ == "__main__":
    main()
