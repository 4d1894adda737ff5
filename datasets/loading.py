"""The loaders of a run: from the decoded-image store, or streamed from the files by DataLoader workers.

`build_loaders(opt, splits, device)` returns the training loader (one batch of the batch sampler per step)
and, per evaluated split, {"query": loader[, "gallery": loader]}. Every loader yields
`(labels, images, indices)` with the images already on `device` as float in the backbone's convention. A
storage sampler (datasets/samplers/storage_based.py) also gets `storage`: the training images under the
evaluation transforms, in order, from which its embedding storage is filled and refreshed.

`--data_cache` picks the source of the photographs (the embedded glyphs are an in-memory array already):

* `device`: the store (datasets/image_store.py) on the GPU, augmented there batch-wise
  (datasets/device_augment.py); no worker, no decoding after the first epoch, no host-to-device copy;
* `ram`: the store in RAM (pinned on a CUDA run), each batch gathered there and sent to the device;
* `off`: the streaming DataLoader below;
* `auto`: on CUDA `device` when the stores fit `--data_cache_gb` (default: a quarter of the GPU's memory),
  else `ram` when they fit half of the available RAM, else `off`; on the CPU `off`, so a CPU run keeps
  today's augmentations and numbers. The stores' size is bounded from the image counts before anything is
  decoded (a training image at most 2 resize x 2 resize, an evaluation image crop x crop).

The streaming loaders ship uint8 batches (a quarter of float32's bytes through shared memory) and convert
them on the device with the same operations as the per-image transform (`transforms.split_at_float`), so
the numbers are those of the whole transform. On CUDA their workers persist across epochs, prefetch 4
batches each and pin memory; the training batches then carry their own seed (drawn in the main process
from the loader's generator, which the `last` checkpoint keeps), so a batch gets the same crops whichever
worker makes it, and a resumed run replays an epoch exactly. On the CPU the training workers start afresh
each epoch, seeded from that generator, as before.
"""
from __future__ import annotations

import copy
import os
import random
import warnings
from typing import Dict, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

import architectures
import evaluation
from datasets import samplers, transforms, workers as worker_processes
from datasets.base import DMLDataset, FileDataset
from datasets.device_augment import BatchAugment
from datasets.image_store import LazyStore, StoreEvalLoader, StoreSpec, StoreTrainLoader, train_long_side
from utilities import distributed
from utilities.errors import UsageError

#: Share of the GPU's memory the stores may take by default (--data_cache_gb), and of the available RAM.
DEVICE_SHARE = 0.25
RAM_SHARE = 0.5
#: Evaluation batch on CUDA (inference only: activations are not kept); the CPU keeps --bs.
CUDA_EVAL_BATCH = 512
PREFETCH_BATCHES = 4
#: The loaders' key of the storage sampler's embedding pass.
STORAGE = "storage"
#: On CUDA: persistent workers with per-batch seeds and deeper prefetch (benchmarks/recipe_speed.py turns it off
#: to measure what it saves).
LEAN_ON_CUDA = True


def own_seed(opt) -> int:
    """The seed of this process's augmentations: --seed, or under several processes one per rank
    (utilities.distributed.rank_seed), so the processes' images are not augmented alike."""
    return distributed.rank_seed(opt.seed, distributed.current().rank)


def evaluation_batch_size(opt, device: torch.device) -> int:
    return max(opt.bs, CUDA_EVAL_BATCH) if device.type == "cuda" else opt.bs


def cache_dir(opt) -> Optional[str]:
    """--data_cache_dir, default `<save_path>/.decoded_images`; `none` writes no disk cache."""
    if opt.data_cache_dir is None:
        return os.path.join(opt.save_path, ".decoded_images")
    return None if opt.data_cache_dir.lower() == "none" else opt.data_cache_dir


def store_bytes_bound(opt, splits: dict, evaluated: dict) -> int:
    """Upper bound of the stores' size: the training split at (2 resize)^2, every evaluated split at crop^2."""
    crop, resize = transforms.sizes(opt, architectures.input_convention(opt.arch))
    total = 3 * len(splits["training"]) * train_long_side(resize) ** 2
    for sets in evaluated.values():
        total += sum(3 * len(dataset) * crop ** 2 for dataset in sets.values())
    return total


def available_ram_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def store_mode(opt, splits: dict, evaluated: dict, device: torch.device) -> str:
    """"device", "ram" or "off" for --data_cache on `device` (module docstring)."""
    choice = opt.data_cache
    if choice == "device" and device.type != "cuda":
        raise UsageError("--data_cache device needs a CUDA device; on the CPU use --data_cache ram (or auto/off)")
    if not isinstance(splits["training"], FileDataset):
        if choice in ("device", "ram"):
            warnings.warn(f"--data_cache {choice}: the {opt.dataset} images are an in-memory array already; "
                          "loading them as they are")
        return "off"
    if choice == "off" or (choice == "auto" and device.type != "cuda"):
        return "off"
    need = store_bytes_bound(opt, splits, evaluated)
    if choice in ("auto", "device") and device.type == "cuda":
        budget = opt.data_cache_gb * 2**30 if opt.data_cache_gb else \
            DEVICE_SHARE * torch.cuda.get_device_properties(device).total_memory
        if need <= budget:
            return "device"
        if choice == "device":
            warnings.warn(f"--data_cache device: the decoded images need up to {need / 2**30:.1f} GiB, over the "
                          f"{budget / 2**30:.1f} GiB budget (--data_cache_gb); keeping them in RAM instead")
    if need <= RAM_SHARE * available_ram_bytes():
        return "ram"
    if choice != "auto":
        warnings.warn(f"--data_cache {choice}: the decoded images need up to {need / 2**30:.1f} GiB, more than half "
                      "of the available RAM; streaming them from the files instead")
    return "off"


def build_loaders(opt, splits: dict, device: torch.device) -> Dict[str, object]:
    evaluated = evaluation.evaluated_sets(splits, include_train=not opt.no_train_metrics)
    if issubclass(samplers.SAMPLERS.lookup(opt.data_sampler), samplers.StorageSampler):
        evaluated[STORAGE] = {"query": splits["evaluation"]}
    mode = store_mode(opt, splits, evaluated, device)
    if mode == "off":
        loaders = streaming_loaders(opt, splits, evaluated, device)
    else:
        loaders = store_loaders(opt, splits, evaluated, device, mode)
    if STORAGE in loaders:
        loaders[STORAGE] = loaders[STORAGE]["query"]
    return loaders


def prepare(loaders: Dict[str, object]) -> str:
    """Build (or load) every decoded-image store now; returns one report line per store ('' without stores)."""
    stores = []
    for loader in [loaders["training"], *(l for sets in loaders.values() if isinstance(sets, dict)
                                           for l in sets.values())]:
        if isinstance(loader, (StoreTrainLoader, StoreEvalLoader)) and loader.store not in stores:
            stores.append(loader.store)
    for store in stores:
        store.get()
    return "\n".join(store.report for store in stores)


def store_loaders(opt, splits: dict, evaluated: dict, device: torch.device, mode: str) -> Dict[str, object]:
    convention = architectures.input_convention(opt.arch)
    crop, resize = transforms.sizes(opt, convention)
    target = device if mode == "device" else torch.device("cpu")
    common = dict(target=target, decode_device=device if device.type == "cuda" else None, threads=os.cpu_count() or 1,
                  pin=mode == "ram" and device.type == "cuda", cache_dir=cache_dir(opt))
    train = splits["training"]
    train_store = LazyStore(f"{opt.dataset}_training", train.paths, StoreSpec("train", crop, resize), **common)
    augment = BatchAugment(opt.augmentation, crop, resize, convention, own_seed(opt))
    sampler = samplers.select(opt.data_sampler, train, opt, device)
    loaders = {"training": StoreTrainLoader(train, sampler, train_store,
                                            augment, device)}
    eval_spec = StoreSpec("eval", crop, resize, geometry=torch.nn.Sequential(
        *transforms.photo_geometry(opt, False, convention)))
    batch = evaluation_batch_size(opt, device)
    for split, sets in evaluated.items():
        loaders[split] = {}
        for role, dataset in sets.items():
            key = split + ("" if role == "query" and len(sets) == 1 else f"_{role}")
            store = LazyStore(f"{opt.dataset}_{key}", dataset.paths, eval_spec, **common)
            loaders[split][role] = StoreEvalLoader(dataset.labels, store, batch, convention, device,
                                                   rows=distributed.evaluation_rows(len(dataset), batch))
    return loaders


class DeviceBatches:
    """A DataLoader whose uint8 batches are moved to `device` and finished there by `to_input` (the float
    steps of the transform); training labels go to the device too, evaluation labels stay on the host.
    `batch_sampler` and `generator` are what utilities/resume.py saves, `dataset` the split whose size it
    checks."""

    def __init__(self, loader: DataLoader, to_input, device: torch.device, batch_sampler=None, generator=None,
                 labels_to_device: bool = False, dataset=None):
        self.loader = loader
        self.dataset = dataset if dataset is not None else loader.dataset
        self.labels_to_device = labels_to_device
        self.to_input = to_input.to(device) if isinstance(to_input, torch.nn.Module) else to_input
        self.device = device
        self.batch_sampler = batch_sampler if batch_sampler is not None else loader.batch_sampler
        self.generator = generator if generator is not None else loader.generator

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for labels, images, indices in self.loader:
            images = images.to(self.device, non_blocking=True)
            if self.labels_to_device:
                labels = labels.to(self.device, non_blocking=True)
            yield labels, self.to_input(images), indices


class SeededBatches:
    """A batch sampler whose batches carry a seed drawn from `generator`: yields (seed, indices)."""

    def __init__(self, batch_sampler, generator: torch.Generator):
        self.batch_sampler = batch_sampler
        self.generator = generator

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        for indices in self.batch_sampler:
            yield int(torch.randint(0, 2**62, (), generator=self.generator)), indices


class SeededItems(torch.utils.data.Dataset):
    """`dataset`'s items for a (seed, indices) batch, with torch, numpy and random seeded by the batch's seed
    first, so the batch's augmentations do not depend on the worker that makes it."""

    def __init__(self, dataset: DMLDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, request):
        seed, indices = request
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        return [self.dataset[i] for i in indices]


class _Finish(torch.nn.Module):
    """The float steps of a transform, as a module (its normaliser's buffers follow `.to(device)`)."""

    def __init__(self, steps):
        super().__init__()
        self.steps = torch.nn.ModuleList(steps)

    def forward(self, x):
        for step in self.steps:
            x = step(x)
        return x


def uint8_view(dataset: DMLDataset):
    """(a shallow copy of `dataset` whose items stop at uint8, the module that finishes a batch of them)."""
    head, tail = transforms.split_at_float(dataset.transform)
    view = copy.copy(dataset)
    view.transform = head
    return view, _Finish(tail.transforms)


def streaming_loaders(opt, splits: dict, evaluated: dict, device: torch.device,
                      lean: Optional[bool] = None) -> Dict[str, object]:
    """DataLoaders over the files; `lean` (default: on CUDA with workers) makes the workers persistent with
    per-batch seeds and deeper prefetch."""
    cuda = device.type == "cuda"
    workers = 0 if splits["training"].in_memory else min(opt.kernels, os.cpu_count() or 1)
    lean = (cuda and workers > 0 and LEAN_ON_CUDA) if lean is None else lean
    common = dict(pin_memory=cuda, **worker_processes.loader_options(workers))
    if lean:
        common["prefetch_factor"] = PREFETCH_BATCHES
    train, finish = uint8_view(splits["training"])
    sampler = samplers.select(opt.data_sampler, splits["training"], opt, device)
    generator = torch.Generator().manual_seed(own_seed(opt))
    if lean:
        loader = DataLoader(SeededItems(train), batch_sampler=SeededBatches(sampler, generator), persistent_workers=True,
                            generator=torch.Generator().manual_seed(opt.seed), **common)
        loaders = {"training": DeviceBatches(loader, finish, device, batch_sampler=sampler, generator=generator,
                                             labels_to_device=True, dataset=splits["training"])}
    else:
        loader = DataLoader(train, batch_sampler=sampler, persistent_workers=False, generator=generator, **common)
        loaders = {"training": DeviceBatches(loader, finish, device, labels_to_device=True,
                                             dataset=splits["training"])}
    batch = evaluation_batch_size(opt, device)
    for split, sets in evaluated.items():
        loaders[split] = {}
        for role, dataset in sets.items():
            view, finish = uint8_view(dataset)
            if distributed.current().several:  # this process's whole batches (utilities/distributed.py)
                view = torch.utils.data.Subset(view, distributed.evaluation_rows(len(view), batch))
            loader = DataLoader(view, batch_size=batch, shuffle=False, persistent_workers=workers > 0,
                                generator=torch.Generator().manual_seed(opt.seed), **common)
            loaders[split][role] = DeviceBatches(loader, finish, device)
    return loaders
