"""Forward + backward time of every loss against its pytorch-metric-learning equivalent, as ratios.

    python benchmarks/criteria_speed.py [--bs 112] [--dim 128] [--repeats 15] [--inner 5] [--threads 1]

Both sides get the same embeddings, labels (--samples_per_class per class), parameters and, for losses fed
by a miner, the same tuples (mined once beforehand, so neither side pays for mining; multisimilarity mines
inside the loss on both sides). Ours and PML's are timed interleaved in one process, --repeats times each,
and the table shows the median of the per-repeat ratios ours / PML (below 1: ours is faster). Exits with
status 1 when a ratio exceeds --max_ratio. Absolute milliseconds are medians too, for orientation only:
on a shared machine they move with the load, the ratios much less.
"""
from __future__ import annotations

import argparse
import math
import warnings
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pytorch_metric_learning import distances, losses, miners, reducers  # noqa: E402

import batchminer  # noqa: E402
import criteria  # noqa: E402
import parameters  # noqa: E402


class Fixed:
    """Hands the loss the tuples mined beforehand."""

    def __init__(self, tuples, name, output):
        self.tuples, self.name, self.OUTPUT = tuples, name, output

    def bind(self, criterion):
        pass

    def __call__(self, batch, labels):
        return self.tuples


def copy_(dst, src):
    with torch.no_grad():
        dst.copy_(src)


def build(name, opt, x, labels, n_classes):
    """(our criterion, PML callable (x, labels) -> loss, PML module with parameters, PML name)."""
    cls = criteria.REGISTRY[name]
    miner = None
    if cls.REQUIRES_BATCHMINER:
        miner_name = {"npairs": "npair", "lifted": "lifted"}.get(cls.MINER_OUTPUT, "distance")
        tuples = batchminer.select(miner_name, opt)(x.detach(), labels)
        miner = Fixed(tuples, miner_name, cls.MINER_OUTPUT)
    C, D = n_classes, opt.embed_dim
    ours = criteria.select(name, opt, batchminer=miner, n_classes=C)
    raw_l2 = distances.LpDistance(normalize_embeddings=False)
    triplets = tuple(miner.tuples.T) if miner is not None and cls.MINER_OUTPUT == "triplets" else None

    if name == "triplet":
        pml = losses.TripletMarginLoss(margin=0.2, distance=distances.LpDistance(power=2, normalize_embeddings=False),
                                       reducer=reducers.MeanReducer())
        return ours, lambda e, y: pml(e, y, triplets), pml, "TripletMarginLoss"
    if name == "contrastive":
        pml = losses.ContrastiveLoss(pos_margin=0, neg_margin=1, distance=raw_l2, reducer=reducers.MeanReducer())
        return ours, lambda e, y: pml(e, y, triplets), pml, "ContrastiveLoss"
    if name == "margin":
        pml = losses.MarginLoss(margin=0.2, beta=1.2, learn_beta=True, num_classes=C, distance=raw_l2)
        return ours, lambda e, y: pml(e, y, triplets), pml, "MarginLoss"
    if name == "snr":
        pml = losses.TripletMarginLoss(margin=0.2, distance=distances.SNRDistance())
        return ours, lambda e, y: pml(e, y, triplets), pml, "TripletMarginLoss(SNRDistance)"
    if name == "quadruplet":
        # PML has no quadruplet loss. Reference point: its TripletMarginLoss on two triplet sets, (a, p, n) and
        # (a, p, n') with n' from a third class: the same number of hinge terms as ours.
        fourth, _ = ours.fourth_samples(labels, miner.tuples)
        second = (triplets[0], triplets[1], fourth)
        pml = losses.TripletMarginLoss(margin=0.2, distance=raw_l2, reducer=reducers.MeanReducer())
        return ours, lambda e, y: pml(e, y, triplets) + pml(e, y, second), pml, "2 x TripletMarginLoss (none in PML)"
    if name == "multisimilarity":
        sim = distances.DotProductSimilarity(normalize_embeddings=False)
        pml_miner = miners.MultiSimilarityMiner(epsilon=0.1, distance=sim)
        pml = losses.MultiSimilarityLoss(alpha=2, beta=40, base=0.5, distance=sim)
        return ours, lambda e, y: pml(e, y, pml_miner(e, y)), pml, "MultiSimilarityLoss + MultiSimilarityMiner"
    if name == "npair":
        first = torch.unique(labels, return_inverse=False)
        a = torch.stack([torch.nonzero(labels == c)[0, 0] for c in first])
        p = torch.stack([torch.nonzero(labels == c)[1, 0] for c in first])
        empty = torch.empty(0, dtype=torch.long)
        pml = losses.NPairsLoss()
        return ours, lambda e, y: pml(e, y, (a, p, empty, empty)), pml, "NPairsLoss"
    if name == "angular":
        pml = losses.AngularLoss(alpha=45)
        return ours, pml, pml, "AngularLoss"
    if name == "lifted":
        pml = losses.GeneralizedLiftedStructureLoss(neg_margin=1, pos_margin=0)
        return ours, pml, pml, "GeneralizedLiftedStructureLoss"
    if name == "histogram":
        pml = losses.HistogramLoss(n_bins=opt.loss_histogram_nbins - 1)
        return ours, pml, pml, "HistogramLoss"
    if name == "circle":
        pml = losses.CircleLoss(m=0.4, gamma=80)
        return ours, pml, pml, "CircleLoss"
    if name == "proxynca":
        pml = losses.ProxyNCALoss(num_classes=C, embedding_size=D, softmax_scale=9)
        copy_(pml.proxies, ours.proxies)
        return ours, pml, pml, "ProxyNCALoss"
    if name == "proxyanchor":
        pml = losses.ProxyAnchorLoss(num_classes=C, embedding_size=D, margin=0.1, alpha=32)
        copy_(pml.proxies, ours.proxies)
        return ours, pml, pml, "ProxyAnchorLoss"
    if name == "softmax":
        pml = losses.NormalizedSoftmaxLoss(num_classes=C, embedding_size=D, temperature=0.05)
        copy_(pml.W, ours.class_weights.T)
        return ours, pml, pml, "NormalizedSoftmaxLoss"
    if name == "arcface":
        pml = losses.ArcFaceLoss(num_classes=C, embedding_size=D, margin=math.degrees(0.5), scale=16)
        copy_(pml.W, ours.class_weights.T)
        return ours, pml, pml, "ArcFaceLoss"
    if name == "softtriplet":
        pml = losses.SoftTripleLoss(num_classes=C, embedding_size=D, centers_per_class=2, la=8, gamma=0.1, margin=0.01)
        copy_(pml.fc, ours.centroids)
        return ours, pml, pml, "SoftTripleLoss"
    raise KeyError(name)


def step_seconds(loss_fn, module, u, labels, inner):
    """Seconds for `inner` forward + backward passes, gradients into the input and the loss's parameters."""
    params = list(module.parameters())
    start = time.perf_counter()
    for _ in range(inner):
        x = F.normalize(u, dim=1)
        loss = loss_fn(x, labels)
        torch.autograd.grad(loss, [u] + params, allow_unused=True)
    return (time.perf_counter() - start) / inner


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bs", type=int, default=112)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--samples_per_class", type=int, default=2)
    ap.add_argument("--n_classes", type=int, default=100, help="Classes of the proxy/classification losses.")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max_ratio", type=float, default=1.5)
    ap.add_argument("--losses", nargs="+", default=sorted(n for n in criteria.REGISTRY if n != "s2sd"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence")  # PML's HistogramLoss, every call

    torch.manual_seed(0)
    labels = torch.arange(args.bs // args.samples_per_class).repeat_interleave(args.samples_per_class)
    u = torch.randn(len(labels), args.dim, requires_grad=True)
    x = F.normalize(u, dim=1)
    rows, worst = [], 0.0
    for name in args.losses:
        opt = parameters.parse(["--loss", name, "--embed_dim", str(args.dim), "--batch_mining",
                                {"npair": "npair", "angular": "npair", "lifted": "lifted"}.get(name, "distance")])
        torch.manual_seed(1)
        ours, pml_fn, pml_module, pml_name = build(name, opt, x, labels, args.n_classes)
        ours_s, pml_s, ratios = [], [], []
        step_seconds(ours, ours, u, labels, 1)  # warm-up
        step_seconds(pml_fn, pml_module, u, labels, 1)
        for r in range(args.repeats):
            first_ours = r % 2 == 0  # alternate the order so neither side always runs on a warmer cache
            a = step_seconds(ours, ours, u, labels, args.inner) if first_ours else None
            b = step_seconds(pml_fn, pml_module, u, labels, args.inner)
            a = a if first_ours else step_seconds(ours, ours, u, labels, args.inner)
            ours_s.append(a)
            pml_s.append(b)
            ratios.append(a / b)
        ratio = statistics.median(ratios)
        worst = max(worst, ratio)
        rows.append((name, pml_name, 1e3 * statistics.median(ours_s), 1e3 * statistics.median(pml_s), ratio))

    print(f"forward+backward, batch {args.bs} ({args.samples_per_class} per class), dim {args.dim}, CPU, "
          f"{args.threads} thread(s), torch {torch.__version__}, median of {args.repeats} x {args.inner}")
    print("| loss | pytorch-metric-learning equivalent | ours ms | PML ms | ours / PML |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, pml_name, a, b, ratio in rows:
        print(f"| {name} | {pml_name} | {a:.2f} | {b:.2f} | {ratio:.2f} |")
    if worst > args.max_ratio:
        print(f"slower than {args.max_ratio}x its equivalent: " + ", ".join(r[0] for r in rows if r[4] > args.max_ratio))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
