"""How much the margin loss's normaliser changes its scale: N_or / N_terms on realistic batches, per epoch of a
margin training on glyphs (docs/reference_parity.md, criteria/margin.py).

The default margin loss divides by N_terms = #{pos > 0} + #{neg > 0} (Wu et al.'s count); the reference, and
--reference_parity, by N_or = #{pos > 0 or neg > 0}. The default loss and its gradients are therefore
N_or / N_terms times the reference's. This trains `--loss margin --batch_mining distance` (beta 1.2, margin
0.2) on glyphs, batches of --bs at 2 per class, and prints the ratio over each epoch's steps: epoch 0 is the
fresh embedding (before any update), then each epoch of training.

With --no_upper_cutoff the miner draws as the reference's did (no upper cutoff, as under --reference_parity).

    python benchmarks/margin_normaliser.py [--epochs 4] [--bs 112] [--embed_dim 128] [--threads 2] [--no_upper_cutoff]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import architectures  # noqa: E402
import criteria  # noqa: E402
import datasets  # noqa: E402
import parameters  # noqa: E402
from batchminer import DistanceMiner  # noqa: E402


class Recording(DistanceMiner):
    """The distance miner, keeping the triplets of its last call."""

    def __call__(self, batch, labels):
        self.last = super().__call__(batch, labels)
        return self.last


def active_terms(loss, embeds, labels, triplets):
    """(pos > 0, neg > 0) per triplet of the margin loss."""
    d_ap, d_an = loss.triplet_distances(embeds.detach(), triplets)
    beta = loss.beta.detach()[labels[triplets[:, 0]]]
    return (d_ap - beta + loss.margin) > 0, (beta - d_an + loss.margin) > 0


def main(argv=None, dataset=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--bs", type=int, default=112)
    parser.add_argument("--embed_dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=0, help="Steps per epoch (0: a full pass of the sampler).")
    parser.add_argument("--no_upper_cutoff", action="store_true", help="Mine as the reference did.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    opt = parameters.parse(["--dataset", "glyphs", "--arch", "slimresnet18_normalize", "--not_pretrained",
                            "--embed_dim", str(args.embed_dim), "--bs", str(args.bs), "--lr", "3e-4"])
    train = dataset if dataset is not None else datasets.select("glyphs", opt, "")["training"]
    model = architectures.select(opt.arch, opt).train()
    miner = Recording(upper_cutoff=None if args.no_upper_cutoff else 1.4)
    loss = criteria.MarginLoss(n_classes=train.n_classes, batchminer=miner)
    optimizer = torch.optim.Adam(model.param_groups(opt) + loss.param_groups())
    sampler = datasets.select_sampler("class_random", train, opt)
    cutoff = "no upper cutoff" if args.no_upper_cutoff else "upper cutoff 1.4"
    print(f"N_or / N_terms of the margin loss (glyphs, bs {args.bs}, 2 per class, distance miner with {cutoff}, "
          f"beta 1.2, {args.embed_dim}-d)")
    for epoch in range(args.epochs + 1):
        ratios, pos_share, neg_share = [], [], []
        for step, indices in enumerate(sampler):
            if args.steps and step == args.steps:
                break
            labels, images, _ = zip(*(train[i] for i in indices))
            labels = torch.tensor(labels)
            embeds = model(torch.stack(images))["embeds"]
            value = loss(embeds, labels)
            pos, neg = active_terms(loss, embeds, labels, miner.last)
            ratios.append(int((pos | neg).sum()) / max(int(pos.sum() + neg.sum()), 1))
            pos_share.append(float(pos.float().mean()))
            neg_share.append(float(neg.float().mean()))
            if epoch:  # epoch 0 measures the fresh embedding
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
        state = "fresh embedding" if epoch == 0 else f"training epoch {epoch}"
        print(f"{state:18s} ratio {np.mean(ratios):.3f} (min {np.min(ratios):.3f}, max {np.max(ratios):.3f}, "
              f"{len(ratios)} batches); active terms: pos {np.mean(pos_share):.2f}, neg {np.mean(neg_share):.2f} "
              "of the triplets")


if __name__ == "__main__":
    main()
