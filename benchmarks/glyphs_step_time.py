"""Training-step time of the quickstart backbones on glyphs, measured side by side in one process.

Variants: the from-scratch `slimresnet18_normalize` on 32 x 32 glyphs (the quickstart), and the
ImageNet-pretrained `efficientnet_lite0_normalize` on glyphs at their stored 32 x 32 and upscaled to 64 x 64.
Each step is the quickstart's: one batch of --bs glyphs (2 per class) through the backbone and the S2SD
criterion (the README quickstart's three target branches, feature distillation on), backward, Adam step. Rounds interleave the
variants, so load from other processes hits all of them alike; the median step time of each and its
ratio to the quickstart are printed.

    python benchmarks/glyphs_step_time.py [--rounds 8] [--bs 112] [--threads 2] [--variants 0 1 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import architectures  # noqa: E402
import criteria  # noqa: E402
import datasets  # noqa: E402
import parameters  # noqa: E402
from datasets.samplers import ClassRandomSampler  # noqa: E402
from utilities.training import TrainingStep  # noqa: E402

VARIANTS = [  # (label, --arch, extra flags, input size)
    ("slimresnet18 scratch, 32 px", "slimresnet18_normalize", ["--not_pretrained"], 32),
    ("efficientnet_lite0 ImageNet, 32 px", "efficientnet_lite0_normalize", [], 32),
    ("efficientnet_lite0 ImageNet, 64 px", "efficientnet_lite0_normalize", [], 64),
]
COMMON = ["--dataset", "glyphs", "--embed_dim", "32", "--loss", "s2sd", "--loss_s2sd_w", "10",
          "--loss_s2sd_target_dims", "256", "512", "1024", "--lr", "3e-4", "--loss_s2sd_feat_distill",
          "--loss_s2sd_feat_distill_delay", "0"]  # the README quickstart's S2SD settings


def make_step(arch, flags, size, bs, batches):
    opt = parameters.parse(COMMON + ["--arch", arch, "--bs", str(bs)] + flags)
    splits = datasets.select("glyphs", opt, "")
    model = architectures.select(arch, opt).train()
    criterion = criteria.select("s2sd", opt, n_classes=splits["training"].n_classes, feature_dim=model.feature_dim)
    optimizer = torch.optim.Adam([g for g in model.param_groups(opt) + criterion.param_groups() if g["params"]])
    one_step = TrainingStep(model, criterion)  # the training loop's forward, as main.py runs it
    data = []
    for indices in batches:
        items = [splits["training"][i] for i in indices]
        images = torch.stack([image for _, image, _ in items])
        if size != images.shape[-1]:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        data.append((images, torch.tensor([label for label, _, _ in items])))

    def step(k):
        images, labels = data[k % len(data)]
        start = time.perf_counter()
        loss, _ = one_step(images, labels)
        one_step.precision.backward_and_step(loss, optimizer)
        return time.perf_counter() - start

    step(0)  # warm-up: first-call kernel selection
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--bs", type=int, default=112)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", type=int, nargs="+", default=list(range(len(VARIANTS))),
                        help="Indices into VARIANTS; the first is the base of the ratios.")
    args = parser.parse_args(argv)
    variants = [VARIANTS[i] for i in args.variants]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    opt = parameters.parse(COMMON + ["--arch", "slimresnet18_normalize", "--not_pretrained"])
    train = datasets.select("glyphs", opt, "")["training"]
    sampler = ClassRandomSampler(train.labels, args.bs, 2, seed=0)
    batches = list(sampler)[:4]
    steps = [make_step(arch, flags, size, args.bs, batches) for _, arch, flags, size in variants]
    times = [[] for _ in variants]
    for k in range(args.rounds):
        for i, step in enumerate(steps):
            times[i].append(step(k))
    base = statistics.median(times[0])
    print(f"median seconds per training step (bs {args.bs}, {args.threads} threads, {args.rounds} interleaved rounds)")
    for (label, *_), t in zip(variants, times):
        print(f"{label:38s} {statistics.median(t):7.3f} s   x{statistics.median(t) / base:5.2f}")


if __name__ == "__main__":
    main()
