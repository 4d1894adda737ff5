"""What the pictures cost next to training, measured side by side in one process on the quickstart setup.

    python benchmarks/picture_cost.py [--epochs 1] [--tsne_points 2000]

Trains the glyphs quickstart configuration (slimresnet18, S2SD) for --epochs with pictures off, then, on the
same machine and in the same process, times what a run draws: the progression plots of every logged group,
the retrieval grid (8 queries x 5 neighbours) after each epoch, and the t-SNE map once at the end. Prints each
as a ratio to one epoch (training + evaluation), so a busy machine scales both sides alike.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import architectures  # noqa: E402
import datasets  # noqa: E402
import evaluation  # noqa: E402
import main  # noqa: E402
import parameters  # noqa: E402
from evaluation import progression_plots  # noqa: E402
from utilities import embedding_map, resume, retrieval_grid  # noqa: E402

QUICKSTART = ["--dataset", "glyphs", "--arch", "slimresnet18_normalize", "--not_pretrained", "--loss", "s2sd",
              "--loss_s2sd_feat_distill", "--loss_s2sd_feat_distill_delay", "100", "--lr", "1e-3",
              "--no_train_metrics", "--seed", "0", "--device", "cpu"]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main_benchmark(argv=None, flags=()):
    """`flags` are extra main.py flags for the training run (the smoke test shrinks it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--tsne_points", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as save_path:
        argv = QUICKSTART + ["--n_epochs", str(args.epochs), "--save_path", save_path, "--savename", "bench",
                             "--plot_every", "0", "--tsne_points", "0", *flags]
        start = time.perf_counter()
        summary = main.main(argv)
        run_dir = summary["run_dir"]
        with open(os.path.join(run_dir, "CSV_Logs", "Data_Train_time.csv")) as f:
            train_seconds = [float(row["time"]) for row in csv.DictReader(f)]
        epoch_seconds = (time.perf_counter() - start) / args.epochs  # training + evaluation + checkpoints, per epoch

        opt = parameters.parse(argv)
        splits = datasets.select(opt.dataset, opt, opt.source_path)
        model = architectures.select(opt.arch, opt)
        model.load_state_dict(torch.load(os.path.join(run_dir, resume.LAST_CHECKPOINT), weights_only=True)["model"])
        loader = torch.utils.data.DataLoader(splits["testing"], batch_size=opt.bs)
        features, labels = evaluation.embed(model, loader, torch.device("cpu"), ["embeds"])
        features = features["embeds"]

        plots_first = timed(progression_plots.draw_all, run_dir)  # includes importing matplotlib
        plots = timed(progression_plots.draw_all, run_dir)
        queries = retrieval_grid.pick_queries(len(labels), 8, opt.seed)
        grid = timed(retrieval_grid.draw, os.path.join(run_dir, "grid.png"), splits["testing"], features, labels,
                     queries, 5, "benchmark")
        tsne = timed(embedding_map.draw, run_dir, "Test", features, labels, args.tsne_points, opt.seed)

    print(f"one quickstart epoch (training {sum(train_seconds) / len(train_seconds):.1f} s of it): {epoch_seconds:.1f} s")
    print(f"progression plots, per epoch:   {plots / epoch_seconds:.2%} of an epoch (first call, with imports: "
          f"{plots_first / epoch_seconds:.2%})")
    print(f"retrieval grid, per epoch:      {grid / epoch_seconds:.2%} of an epoch")
    print(f"t-SNE map of {min(args.tsne_points, len(labels))} points, once: {tsne / epoch_seconds:.2%} of an epoch")


if __name__ == "__main__":
    main_benchmark()
