"""Per-step cost of each batch sampler against class_random, measured side by side in one process.

A sampler's cost per training step = (the time to draw one epoch's batches + the epoch's storage updates, one
per step, for the storage samplers) / the number of steps of the epoch. The storage holds synthetic embeddings
(N x D, N images in C classes) on --device. Rounds interleave the samplers, so load from other processes hits
all of them alike; the median of each is printed with its ratio to class_random, and, as the share of a
training step it would add, against the median time of one quickstart training step (slimresnet18 on 32 x 32
glyphs at batch --bs, forward + backward + Adam) measured in the same rounds on the CPU.

    python benchmarks/sampler_speed.py [--n 5864 --classes 100]              CUB-sized (default)
    python benchmarks/sampler_speed.py --n 59551 --classes 11318 --rounds 3  SOP-sized
    [--dim 128] [--bs 112] [--spc 2] [--pool 512] [--ncomps 10] [--device cpu|cuda] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import architectures  # noqa: E402
import criteria  # noqa: E402
import parameters  # noqa: E402
from datasets.embedding_storage import EmbeddingStorage  # noqa: E402
from datasets.samplers import SAMPLERS, StorageSampler  # noqa: E402


def build(name, labels, args, device):
    cls = SAMPLERS[name]
    if not issubclass(cls, StorageSampler):
        return cls(labels, args.bs, args.spc, seed=0)
    storage = EmbeddingStorage(len(labels), args.dim, device)
    storage.fill(torch.nn.functional.normalize(torch.randn(len(labels), args.dim), dim=1))
    options = {"n_candidates": args.ncomps} if "batchmatch" in name else {}
    return cls(labels, args.bs, args.spc, storage, seed=0, pool_size=args.pool, **options)


def seconds_per_step(sampler, embeddings) -> float:
    """One epoch of batches, plus one storage update per batch for a storage sampler, per step."""
    start = time.perf_counter()
    batches = list(sampler)
    if sampler.storage is not None:
        for batch in batches:
            sampler.storage.update(torch.as_tensor(batch), embeddings)
    if sampler.storage is not None and sampler.storage.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(batches)


def training_step(bs: int):
    """A quickstart training step on random 32 x 32 glyph-sized images: () -> seconds."""
    opt = parameters.parse(["--dataset", "glyphs", "--arch", "slimresnet18_normalize", "--not_pretrained",
                            "--embed_dim", "32", "--bs", str(bs)])
    model = architectures.select(opt.arch, opt).train()
    loss = criteria.MultiSimilarityLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images, labels = torch.randn(bs, 3, 32, 32), torch.arange(bs // 2).repeat_interleave(2)

    def step() -> float:
        start = time.perf_counter()
        value = loss(model(images)["embeds"], labels)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        return time.perf_counter() - start

    step()  # warm-up
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5864, help="Training images (CUB200: 5864; SOP: 59551).")
    parser.add_argument("--classes", type=int, default=100, help="Training classes (CUB200: 100; SOP: 11318).")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--bs", type=int, default=112)
    parser.add_argument("--spc", type=int, default=2)
    parser.add_argument("--pool", type=int, default=512, help="--data_batchmatch_bigbs")
    parser.add_argument("--ncomps", type=int, default=10, help="--data_batchmatch_ncomps")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), help="class_random first: the base.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    labels = np.random.default_rng(0).permutation(np.arange(args.n) % args.classes)
    device = torch.device(args.device)
    samplers = {name: build(name, labels, args, device) for name in args.samplers}
    embeddings = torch.randn(args.bs, args.dim, device=device)
    step = training_step(args.bs)
    times = {name: [] for name in samplers}
    step_times = []
    for _ in range(args.rounds):
        for name, sampler in samplers.items():
            times[name].append(seconds_per_step(sampler, embeddings))
        step_times.append(step())
    base, train_step = statistics.median(times[args.samplers[0]]), statistics.median(step_times)
    print(f"sampler cost per training step (N {args.n}, {args.classes} classes, D {args.dim}, bs {args.bs}, "
          f"{args.spc} per class, pool {args.pool}, {args.ncomps} candidates, {args.device}, {args.threads} threads, "
          f"median of {args.rounds} interleaved rounds)")
    print(f"one quickstart training step on the CPU: {train_step * 1e3:.1f} ms")
    for name, values in times.items():
        t = statistics.median(values)
        print(f"{name:20s} {t * 1e3:9.3f} ms/step   x{t / base:8.1f} {args.samplers[0]}   "
              f"step x{(train_step + t) / (train_step + base):5.2f}")


if __name__ == "__main__":
    main()
