"""Batch samplers (`--data_sampler`): each yields lists of dataset indices, floor(N / bs) batches per epoch,
and has `state_dict()` / `load_state_dict()` (its generator, and the embedding storage it reads), so a resumed
run draws the same batches.

* `class_random` (default): bs / spc classes, spc images of each (class_random.py);
* `full_random`: class-balanced random images with a guaranteed positive pair (full_random.py);
* `greedy_coreset`, `d2_coreset`: coresets of a pool of stored embeddings (coreset.py);
* `disthist_batchmatch`, `fid_batchmatch`: the candidate batch that best matches a pool (batchmatch.py).

The last four read an `EmbeddingStorage` (datasets/embedding_storage.py) that the training loop keeps up to
date. Build one in Python with its keyword arguments, `ClassRandomSampler(labels, 112, 2, seed=0)`, or the
CLI's with `select(name, dataset, opt, device)`, from the flags each sampler declares next to its class
(`FLAGS`, utilities/flags.py).
"""
from __future__ import annotations

from datasets.embedding_storage import EmbeddingStorage
from utilities import distributed, flags
from utilities.registry import ComponentRegistry

SAMPLERS: ComponentRegistry = ComponentRegistry("batch sampler", "--data_sampler")


def select(name: str, dataset, opt, device="cpu"):
    """The CLI's `--data_sampler` over a training `DMLDataset`: the class's flags as keyword arguments, and
    for a storage sampler a new, empty EmbeddingStorage of --embed_dim columns on `device` (the caller fills it);
    under several processes (torchrun) this process's share of each global batch (utilities.distributed.RankShare)."""
    cls = SAMPLERS.lookup(name)
    kwargs = flags.options(opt, cls.FLAGS)
    if issubclass(cls, StorageSampler):
        kwargs["storage"] = EmbeddingStorage(len(dataset), opt.embed_dim, device,
                                             **flags.options(opt, EmbeddingStorage.FLAGS))
    sampler = cls(dataset.labels, opt.bs, opt.samples_per_class, seed=opt.seed, **kwargs)
    processes = distributed.current()
    if processes.several:  # torchrun: this process's share of each global batch
        distributed.check_batch_share(opt.bs, opt.samples_per_class, processes.world_size)
        return distributed.RankShare(sampler, processes.rank, processes.world_size)
    return sampler


# Importing the sampler modules fills SAMPLERS.
from datasets.samplers.base import BatchSampler  # noqa: E402,F401
from datasets.samplers.storage_based import StorageSampler  # noqa: E402,F401
from datasets.samplers.class_random import ClassRandomSampler  # noqa: E402,F401
from datasets.samplers.full_random import FullRandomSampler  # noqa: E402,F401
from datasets.samplers.coreset import D2CoresetSampler, GreedyCoresetSampler  # noqa: E402,F401
from datasets.samplers.batchmatch import DistHistBatchMatchSampler, FIDBatchMatchSampler  # noqa: E402,F401
