"""Command-line flags.

The flag groups, names and defaults are those of the reference S2SD / "Revisiting DML" `parameters.py`
(REFERENCE.md §1), so published commands keep working, plus:

* `--source` as an explicit alias of `--source_path` (prefix abbreviations are switched off, so the
  reference README's `--source` would otherwise stop working);
* the S2SD README's names as aliases: `--loss_distill_{source,target,T,w,net_dims,match_feats,feat_w,
  max_feat_iter}` and `--loss_s2sd_feat_distill_w`;
* `--device auto|cpu|cuda` and `--pretrained_path FILE`;
* the speed flags of `speed_parameters` (`--amp`, `--data_cache`, `--resolution`, ...).

`parse(argv)` validates what can be validated before anything is built (names exist, `--bs` divisible by
`--samples_per_class`, the miner is allowed by the loss) and stops with one line and exit status 2.

The flags of each loss and miner are declared next to its class (`FLAGS`, utilities/flags.py) and added
here by the registry, in the reference's groups and order. `opt` is never changed after parsing: facts of the
run (the number of training classes, the backbone's feature width) are passed to what needs them.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import batchminer
import criteria
from utilities.flags import Bounded, RangeHelpFormatter

DEFAULT_EVALUATION_METRICS = ["e_recall@1", "e_recall@2", "e_recall@4", "e_recall@8", "e_recall@10", "e_recall@100",
                              "e_recall@1000", "nmi", "mAP@R", "r_precision"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`main.py: error: ...`) and exit status 2. Under torchrun
    every process parses the same command line, so only rank 0 prints the line (all of them exit 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        if os.environ.get("RANK", "0") == "0":
            sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def basic_training_parameters(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("basic training")
    g.add_argument("--dataset", default="cub200", type=str, help="Dataset name (see datasets/).")
    g.add_argument("--use_tv_split", action="store_true", help="Split the training classes into train and validation.")
    g.add_argument("--tv_split_by_samples", action="store_true", help="Split by samples per class instead of by classes.")
    g.add_argument("--tv_split_perc", default=0.8, type=Bounded(float, gt=0, lt=1),
                   help="Fraction of the training data kept for training.")
    g.add_argument("--folder_train_perc", default=0.5, type=Bounded(float, gt=0, lt=1),
                   help="--dataset folder: fraction of the class folders (sorted by name) that train; the rest test.")
    g.add_argument("--augmentation", default="base", choices=["base", "adv", "big", "red"], help="Training augmentation.")
    g.add_argument("--lr", default=0.00001, type=Bounded(float, gt=0),
                   help="Learning rate of the network (and the S2SD heads).")
    g.add_argument("--fc_lr", default=-1, type=Bounded(float, ge=0, also=(-1,)),
                   help="Own learning rate for the embedding layer; -1: --lr.")
    g.add_argument("--decay", default=0.0004, type=Bounded(float, ge=0), help="Weight decay of the network parameters.")
    g.add_argument("--n_epochs", default=150, type=Bounded(int, ge=1), help="Number of training epochs.")
    g.add_argument("--kernels", default=6, type=Bounded(int, ge=0),
                   help="DataLoader workers (capped at the CPU count) and faiss threads.")
    g.add_argument("--bs", default=112, type=Bounded(int, ge=2), help="Batch size (training and embedding).")
    g.add_argument("--seed", default=1, type=Bounded(int, ge=0, le=2**32 - 1), help="Random seed for everything.")
    g.add_argument("--scheduler", default="step", choices=["step", "none"], help="MultiStepLR over --tau, or none.")
    g.add_argument("--gamma", default=0.3, type=Bounded(float, gt=0), help="MultiStepLR decay factor.")
    g.add_argument("--tau", default=[1000], nargs="+", type=Bounded(int, ge=1),
                   help="MultiStepLR milestones in epochs.")
    g.add_argument("--optim", default="adam", choices=["adam", "sgd"], help="Optimizer (SGD uses momentum 0.9).")
    g.add_argument("--loss", default="margin", type=str, help="Training criterion; 's2sd' for S2SD.")
    g.add_argument("--batch_mining", default="distance", type=str, help="Batch miner for tuple-based losses.")
    g.add_argument("--embed_dim", default=128, type=Bounded(int, ge=1), help="Dimension of the base embedding.")
    g.add_argument("--not_pretrained", action="store_true", help="Start the backbone from random weights.")
    g.add_argument("--pretrained_path", default=None, type=str, help="File with the backbone's ImageNet state dict.")
    g.add_argument("--arch", default="resnet50_frozen_normalize", type=str,
                   help="Backbone plus modifiers: <name>[_frozen][_normalize][_double].")
    g.add_argument("--no_train_metrics", action="store_true", help="Skip the per-epoch evaluation on the training images.")
    g.add_argument("--evaluate_on_gpu", action="store_true",
                   help="Compute the evaluation metrics on the GPU (no faiss-gpu needed); the default on CUDA.")
    g.add_argument("--kmeans_train_classes", action="store_true",
                   help="Clustering metrics (nmi, f1, ami, ...) use k = number of training classes, as the reference "
                        "did, instead of the number of classes of the evaluated split (parity with published numbers).")
    g.add_argument("--reference_parity", action="store_true",
                   help="Train and evaluate as the published reference code did wherever this tool deliberately "
                        "differs by more than a crash fix (margin normaliser, S2SD learning rates, miner cutoff, "
                        "class_random with replacement, k-means k, ...; docs/reference_parity.md).")
    g.add_argument("--evaluation_metrics", nargs="+", default=list(DEFAULT_EVALUATION_METRICS), type=str,
                   help="Metrics computed on every evaluated split.")
    g.add_argument("--storage_metrics", nargs="+", default=["e_recall@1"], type=str,
                   help="A checkpoint is kept for the best value of each of these metrics.")
    g.add_argument("--evaltypes", nargs="+", default=["discriminative"], type=str,
                   help="Which outputs to evaluate: 'discriminative' is the embedding, 'avg_features' the pooled "
                        "features, Combined_<a>_<b>-<wa>-<wb> a weighted combination (docs/metrics.md).")
    g.add_argument("--gpu", default=None, nargs="+", type=Bounded(int, ge=0),
                   help="GPU id(s); without CUDA the run falls back to the CPU.")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="Where to train.")
    g.add_argument("--savename", default="group_plus_seed", type=str, help="Run folder name.")
    g.add_argument("--source_path", "--source", dest="source_path", default=os.path.join(os.getcwd(), "..", "..", "Datasets"),
                   type=str, help="Parent folder of the datasets; /<dataset> is appended.")
    g.add_argument("--save_path", default=os.path.join(os.getcwd(), "Training_Results"), type=str,
                   help="Output root; /<dataset>/<run> is appended.")


def wandb_parameters(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("online logging (Weights & Biases)")
    g.add_argument("--log_online", action="store_true", help="Log to W&B; the key comes from WANDB_API_KEY.")
    g.add_argument("--wandb_key", default=None, type=str, help=argparse.SUPPRESS)
    g.add_argument("--project", default="Sample_Project", type=str, help="W&B project.")
    g.add_argument("--group", default="Sample_Group", type=str, help="W&B group; also part of the run name.")


def loss_specific_parameters(parser: argparse.ArgumentParser) -> None:
    """The flags each loss declares next to its class (criteria/<loss>.py, `FLAGS`)."""
    criteria.REGISTRY.add_flags(parser.add_argument_group("loss-specific"),
                                [name for name in criteria.REGISTRY if name != "s2sd"])


def batchmining_specific_parameters(parser: argparse.ArgumentParser) -> None:
    """The flags each miner declares next to its class (batchminer/<miner>.py, `FLAGS`)."""
    batchminer.REGISTRY.add_flags(parser.add_argument_group("batch mining"))


class _RemovedFlag(argparse.Action):
    """A reference flag that did nothing there and is not implemented here: giving it stops with one line saying why."""

    def __init__(self, option_strings, dest, why: str, **kwargs):
        super().__init__(option_strings, argparse.SUPPRESS, nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.why = why

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not supported: {self.why}; drop it")


def batch_creation_parameters(parser: argparse.ArgumentParser) -> None:
    """--data_sampler and the flags each sampler declares next to its class (datasets/samplers/, `FLAGS`), then
    those of the embedding storage that the storage samplers read (datasets/embedding_storage.py)."""
    import datasets
    from utilities.flags import add_flags

    g = parser.add_argument_group("batch creation")
    g.add_argument("--data_sampler", default="class_random", type=str,
                   help=f"Batch sampler: {', '.join(datasets.SAMPLERS)} (datasets/samplers/).")
    g.add_argument("--samples_per_class", default=2, type=Bounded(int, ge=1), help="Samples per class in a batch.")
    datasets.SAMPLERS.add_flags(g)
    add_flags(g, datasets.EmbeddingStorage.FLAGS)
    g.add_argument("--data_sim_measure", action=_RemovedFlag,
                   why="the reference declared it but no sampler read it; the storage samplers compare Euclidean "
                       "distances")
    g.add_argument("--data_gc_coreset_lim", action=_RemovedFlag,
                   why="the reference's greedy_coreset stored it and never read it")


def s2sd_parameters(parser: argparse.ArgumentParser) -> None:
    """S2SD's flags (criteria/s2sd.py); the second name of each is the S2SD README's spelling of the same setting."""
    criteria.REGISTRY.add_flags(parser.add_argument_group("S2SD"), ["s2sd"])


def run_parameters(parser: argparse.ArgumentParser) -> None:
    """Resuming, dry runs and the pictures a run draws (docs/runs.md)."""
    g = parser.add_argument_group("resume, dry run and pictures")
    g.add_argument("--checkpoint", default=None, type=str,
                   help="Resume a run: its folder, or a checkpoint_last.pth.tar file in it. The run keeps its settings; "
                        "only --n_epochs, --kernels, --device, --gpu, --source_path, --log_online and the picture "
                        "flags may change (docs/runs.md).")
    g.add_argument("--dry_run", action="store_true",
                   help="Build data, model, criterion and optimizer, print the setup and exit without training.")
    g.add_argument("--plot_every", default=None, type=Bounded(int, ge=0),
                   help="Draw the progression plots and the retrieval grid every N epochs and after the last "
                        "(default: only after the last; 0: never).")
    g.add_argument("--retrieval_queries", default=8, type=Bounded(int, ge=0),
                   help="Test queries in the retrieval grid (0: no grid).")
    g.add_argument("--retrieval_k", default=5, type=Bounded(int, ge=1),
                   help="Neighbours shown per query in the retrieval grid.")
    g.add_argument("--tsne_points", default=2000, type=Bounded(int, ge=0),
                   help="At the end, a t-SNE map of at most this many test embeddings (0: no map).")


def speed_parameters(parser: argparse.ArgumentParser) -> None:
    """Speed on a GPU: precision, kernels, the decoded-image store, what runs how often (README, docs/runs.md)."""
    g = parser.add_argument_group("speed")
    g.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="Mixed precision of the backbone (embeddings, similarities and losses stay fp32); "
                        "auto: bf16 on CUDA, off on the CPU. fp16 scales the loss.")
    g.add_argument("--deterministic", action="store_true",
                   help="On CUDA, deterministic kernels without cuDNN autotuning: bit-exact resumption, slower "
                        "convolutions. The CPU is always deterministic.")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the backbone and the criterion (a minute or more of compilation first).")
    g.add_argument("--data_cache", default="auto", choices=["auto", "device", "ram", "off"],
                   help="Decode the photographs once and keep them as uint8 on the GPU (device) or in RAM, with "
                        "batch-wise augmentation on the device; off: decode every epoch in DataLoader workers. "
                        "auto: device, else ram, else off on CUDA by size; off on the CPU.")
    g.add_argument("--data_cache_gb", default=None, type=Bounded(float, gt=0),
                   help="GPU memory the decoded images may take (default: a quarter of the GPU's memory).")
    g.add_argument("--data_cache_dir", default=None, type=str,
                   help="Folder of decoded images kept for later runs (default: <save_path>/.decoded_images; "
                        "'none': keep nothing on disk).")
    g.add_argument("--resolution", default=None, type=Bounded(int, ge=1),
                   help="Input size N: training crops N x N, evaluation resizes to round(8N/7) and crops N "
                        "(default: the backbone's, 224 for ResNet-50).")
    g.add_argument("--train_eval_every", default=1, type=Bounded(int, ge=1),
                   help="Evaluate the training images every N epochs and after the last (without "
                        "--no_train_metrics).")
    g.add_argument("--checkpoint_every", default=1, type=Bounded(int, ge=1),
                   help="Write checkpoint_last.pth.tar every N epochs and after the last.")


def distributed_parameters(parser: argparse.ArgumentParser) -> None:
    """Several processes under torchrun (README "Several GPUs", utilities/distributed.py)."""
    g = parser.add_argument_group("several GPUs (torchrun)")
    g.add_argument("--sync_bn", action="store_true",
                   help="Under torchrun on GPUs, BatchNorm layers that train normalise over the global batch "
                        "(SyncBatchNorm), e.g. for BN-Inception or an unfrozen ResNet.")
    g.add_argument("--dist_timeout", default=1800, type=Bounded(int, ge=1),
                   help="Seconds a process waits for the others in a collective before the job stops (a dead or "
                        "hung process ends the run instead of blocking it); covers rank 0's evaluation.")


GROUPS = (
    basic_training_parameters,
    batch_creation_parameters,
    batchmining_specific_parameters,
    loss_specific_parameters,
    wandb_parameters,
    s2sd_parameters,
    run_parameters,
    speed_parameters,
    distributed_parameters,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="main.py", allow_abbrev=False, formatter_class=RangeHelpFormatter,
                     description="Deep metric learning with S2SD: train, evaluate, log.")
    for add_group in GROUPS:
        add_group(parser)
    return parser


def validate(opt: argparse.Namespace) -> None:
    """Checks that need no data or model; raises UsageError naming the flag and the allowed values."""
    import architectures
    import datasets
    import evaluation.evaltypes
    import metrics
    from utilities import distributed
    from utilities.errors import UsageError
    from utilities.run_folder import check_run_name

    if opt.bs % opt.samples_per_class:
        raise UsageError(
            f"--bs {opt.bs} is not divisible by --samples_per_class {opt.samples_per_class}"
        )
    if opt.wandb_key is not None:
        raise UsageError(
            "--wandb_key is refused: a key on the command line ends up in shell history and process lists; "
            "export WANDB_API_KEY instead"
        )
    datasets.REGISTRY.lookup(opt.dataset)
    datasets.SAMPLERS.lookup(opt.data_sampler)
    architectures.parse_arch(opt.arch)
    batchminer.REGISTRY.lookup(opt.batch_mining)
    criteria.check_loss_and_miner(opt)
    criteria.check_batch_composition(opt)
    metrics.check_names(opt.evaluation_metrics, flag="--evaluation_metrics")
    evaluation.evaltypes.check(opt.evaltypes)
    check_run_name(opt)
    distributed.check_options(opt, distributed.launched_world_size())
    for name in opt.storage_metrics:
        if name not in opt.evaluation_metrics:
            raise UsageError(
                f"--storage_metrics: '{name}' is not computed; add it to --evaluation_metrics "
                f"({' '.join(opt.evaluation_metrics)})"
            )


def inapplicable(opt: argparse.Namespace, given: Sequence[str]) -> list:
    """Warnings for flags given on the command line that this run ignores (the run goes on)."""
    import datasets

    notes = []
    if "--augmentation" in given and opt.dataset in datasets.EMBEDDED:
        notes.append(f"--augmentation does not apply to {opt.dataset}: its training augmentation is fixed "
                     "(a small random affine warp, datasets/transforms.py); the flag is ignored")
    return notes + _sampler_notes(opt, given) + _parity_notes(opt, given)


def _sampler_notes(opt: argparse.Namespace, given: Sequence[str]) -> list:
    """The --data_* flags that the chosen sampler (and its embedding storage) does not read."""
    import datasets
    from datasets.samplers import StorageSampler

    chosen = datasets.SAMPLERS[opt.data_sampler]
    storage = issubclass(chosen, StorageSampler)
    used = set(chosen.FLAGS) | (set(datasets.EmbeddingStorage.FLAGS) if storage else set())
    declared = dict.fromkeys([f for cls in datasets.SAMPLERS.values() for f in cls.FLAGS]
                             + list(datasets.EmbeddingStorage.FLAGS))
    notes = [f"{f.names[0]} does not apply to --data_sampler {opt.data_sampler}; the flag is ignored"
             for f in declared if f.names and f.names[0] in given and f not in used]
    if storage and "--data_mb_lr" in given and opt.data_mb_mom <= 0:
        notes.append("--data_mb_lr only applies with --data_mb_mom > 0; the flag is ignored")
    if storage and opt.data_mb_mom > 0 and opt.data_storage_no_update and not opt.data_idx_full_prec:
        notes.append("--data_mb_mom: with --data_storage_no_update and without --data_idx_full_prec the storage is "
                     "never rewritten; the flag is ignored")
    return notes


def _parity_notes(opt: argparse.Namespace, given: Sequence[str]) -> list:
    """Flags whose value --reference_parity replaces by the reference's behaviour."""
    from batchminer.distance import no_cutoff_under_parity

    if not opt.reference_parity:
        return []
    miner_flags = dict.fromkeys(f for cls in batchminer.REGISTRY.values() for f in cls.FLAGS)
    notes = [f"{f.names[0]} does not apply with --reference_parity: the reference applied no upper cutoff; "
             "the flag is ignored" for f in miner_flags if f.convert is no_cutoff_under_parity and f.names[0] in given]
    if criteria.REGISTRY.lookup(opt.loss) is criteria.S2SD:
        for name in dict.fromkeys([opt.loss_s2sd_source, opt.loss_s2sd_target]):
            cls = criteria.REGISTRY[name]
            notes += [f"{f.names[0]} does not apply inside S2SD with --reference_parity: the reference trained "
                      f"{name}'s parameters at --lr; the flag is ignored"
                      for f in cls.FLAGS if cls.OWN_LR_PARAM and f.param == cls.OWN_LR_PARAM and f.names[0] in given]
    return notes


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and validate `argv` (default: sys.argv[1:]). Bad input exits with status 2 and one line; a
    flag this run ignores gets one warning line on stderr."""
    from utilities.errors import UsageError

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    opt = parser.parse_args(argv)
    try:
        validate(opt)
    except UsageError as err:
        parser.error(str(err))
    given = [arg.split("=", 1)[0] for arg in argv if arg.startswith("--")]
    for note in inapplicable(opt, given):
        sys.stderr.write(f"{parser.prog}: warning: {note}\n")
    return opt
