"""The decoded-image store: every image of a split decoded once to uint8, on the GPU or in (pinned) RAM.

Two kinds of store, one uint8 tensor each (N x 3 x S x S):

* `train`: each training image at its own aspect ratio, shrunk (never enlarged) so that its long side is at
  most `2 * resize` (512 for ResNet's 224 crop; CUB's ~500 x 375 photographs stay at full size), padded to
  S x S by repeating its last row and column. Its original and stored sizes are kept, so the batch-wise
  augmentation (datasets/device_augment.py) draws crops in original pixels, as torchvision does;
* `eval`: the evaluation input itself, Resize(resize) + CenterCrop(crop), S = crop, made by the very
  transform steps of the streaming path (`transforms.photo_geometry`), so with PIL decoding it is
  bit-identical to what the streaming loader feeds the model.

Decoding: JPEGs on the GPU with `torchvision.io.decode_jpeg(device="cuda")`, in batches, when the store is
built for a CUDA run; everything else (and every image on a CPU run) with PIL in a thread pool (PIL and
torch's resize release the GIL). nvJPEG and libjpeg may differ by a grey level or two per pixel (IDCT and
chroma upsampling rounding), so a GPU-built store is close to, not equal to, the PIL-built one.

Disk cache: a built store is written to `<cache dir>/<dataset>_<split>_<kind><size>_<key>.npy` (+ `.json`
with the sizes), the key hashing the dataset, split, kind, sizes and the file list with each file's size
and modification time, so later runs (other seeds) load it instead of decoding; any change to the files
gives a new key. Written atomically (temporary file, then rename; the `.json` last marks it complete).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from datasets.base import to_rgb
from datasets.device_augment import BatchAugment

CACHE_VERSION = 2  # 2: 16-bit grayscale scaled to 8 bits (datasets.base.to_rgb), no longer clipped
GPU_DECODE_BATCH = 128


def train_long_side(resize: int) -> int:
    """Largest stored long side of a training image: twice the evaluation resize (512 at crop 224)."""
    return 2 * resize


@dataclass
class StoreSpec:
    """What one store holds: `kind` "train" (aspect kept, long side <= `long_side`) or "eval" (`geometry`
    applied, `crop` x `crop`)."""

    kind: str
    crop: int
    resize: int
    geometry: Optional[Callable] = None

    @property
    def long_side(self) -> int:
        return train_long_side(self.resize)

    def describe(self) -> str:
        return f"train{self.long_side}" if self.kind == "train" else f"eval{self.resize}-{self.crop}"


@dataclass
class ImageStore:
    """`images` N x 3 x S x S uint8; `original_sizes` and `stored_sizes` N x 2 (height, width) int64 on the CPU."""

    images: torch.Tensor
    original_sizes: torch.Tensor
    stored_sizes: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.images.numel()

    def gather(self, indices: torch.Tensor, device: torch.device,
               device_indices: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The images at `indices` (CPU int64) on `device`, without a host synchronisation on CUDA;
        `device_indices`, the same indices already on `device`, saves copying them again."""
        if self.images.device == device:
            return self.images.index_select(0, to_device(indices, device) if device_indices is None else device_indices)
        if device.type != "cuda":
            return self.images.index_select(0, indices).to(device)
        out = torch.empty((len(indices), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=True)
        torch.index_select(self.images, 0, indices, out=out)
        return out.to(device, non_blocking=True)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on `device`; on CUDA through pinned memory, so the copy does not block the host."""
    if device.type != "cuda" or x.device == device:
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def read_size(path: str):
    """(height, width) from the image header."""
    with Image.open(path) as image:
        return image.height, image.width


def decode_pil(path: str) -> torch.Tensor:
    """3 x H x W uint8, as the streaming path decodes (PIL, converted to RGB by `datasets.base.to_rgb`)."""
    with Image.open(path) as image:
        return TF.pil_to_tensor(to_rgb(image))


def fitted_size(height: int, width: int, long_side: int):
    """The stored size of a training image: shrunk so that its long side is at most `long_side`."""
    scale = min(1.0, long_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class StoreBuilder:
    """Fills one store: `put(i, image)` places a decoded 3 x H x W uint8 image as the spec says."""

    def __init__(self, spec: StoreSpec, n: int, sizes: Optional[np.ndarray], target: torch.device, pin: bool):
        self.spec = spec
        if spec.kind == "train":
            self.original = torch.as_tensor(sizes, dtype=torch.int64).reshape(n, 2)
            self.stored = torch.tensor([fitted_size(h, w, spec.long_side) for h, w in sizes.tolist()],
                                       dtype=torch.int64).reshape(n, 2)
            side = int(self.stored.max()) if n else 1
        else:
            self.original = torch.full((n, 2), spec.crop, dtype=torch.int64)
            self.stored = self.original.clone()
            side = spec.crop
        self.images = torch.empty((n, 3, side, side), dtype=torch.uint8, device=target,
                                  pin_memory=pin and target.type == "cpu")

    def fit(self, i: int, image: torch.Tensor) -> torch.Tensor:
        """The image as stored (on its own device): fitted training image, or the evaluation crop."""
        if self.spec.kind == "eval":
            return self.spec.geometry(image)
        h, w = self.stored[i].tolist()
        if tuple(image.shape[-2:]) != (h, w):
            image = TF.resize(image, [h, w], antialias=True)
        return image

    def put(self, i: int, image: torch.Tensor) -> None:
        image = self.fit(i, image).to(self.images.device)
        h, w = image.shape[-2:]
        row = self.images[i]
        row[:, :h, :w] = image
        row[:, h:, :w] = row[:, h - 1:h, :w]   # repeat the last row ...
        row[:, :, w:] = row[:, :, w - 1:w]     # ... and the last column, into the padding

    def finish(self) -> ImageStore:
        return ImageStore(self.images, self.original, self.stored)


def _is_jpeg(data: torch.Tensor) -> bool:
    return len(data) > 2 and int(data[0]) == 0xFF and int(data[1]) == 0xD8


def _decode_gpu(paths: Sequence[str], device: torch.device, pool: ThreadPoolExecutor):
    """Yield (index, 3 x H x W uint8 image on `device`) for every path: JPEGs decoded by nvJPEG in batches of
    GPU_DECODE_BATCH, anything nvJPEG refuses (PNG, CMYK JPEG, ...) by PIL."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    for start in range(0, len(paths), GPU_DECODE_BATCH):
        chunk = list(range(start, min(start + GPU_DECODE_BATCH, len(paths))))
        data = list(pool.map(lambda i: read_file(paths[i]), chunk))
        jpeg = [k for k, d in enumerate(data) if _is_jpeg(d)]
        decoded = {}
        try:
            images = decode_jpeg([data[k] for k in jpeg], mode=ImageReadMode.RGB, device=device) if jpeg else []
            decoded = dict(zip(jpeg, images))
        except RuntimeError:  # one bad file fails the whole batch: decode them one by one
            for k in jpeg:
                try:
                    decoded[k] = decode_jpeg(data[k], mode=ImageReadMode.RGB, device=device)
                except RuntimeError:
                    pass
        rest = [k for k in range(len(chunk)) if k not in decoded]
        for k, image in zip(rest, pool.map(lambda k: decode_pil(paths[chunk[k]]), rest)):
            decoded[k] = image
        for k in range(len(chunk)):
            yield chunk[k], decoded[k]


def build(paths: Sequence[str], spec: StoreSpec, target: torch.device, *, decode_device: Optional[torch.device],
          threads: int, pin: bool = False) -> ImageStore:
    """Decode `paths` into a store on `target` (a CUDA device, or the CPU; pinned with `pin`): with nvJPEG on
    `decode_device` (a CUDA device) or, when it is None, with PIL."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        sizes = np.asarray(list(pool.map(read_size, paths)), dtype=np.int64) if spec.kind == "train" else None
        builder = StoreBuilder(spec, len(paths), sizes, target, pin)
        if decode_device is not None:
            for i, image in _decode_gpu(paths, decode_device, pool):
                builder.put(i, image)
        else:
            list(pool.map(lambda i: builder.put(i, decode_pil(paths[i])), range(len(paths))))
    return builder.finish()


def cache_key(name: str, spec: StoreSpec, paths: Sequence[str]) -> str:
    """`<name>_<kind and size>_<hash>`: the hash covers the name, the spec's sizes and every file's path,
    size and modification time."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, name, spec.describe()]).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"\n{os.path.abspath(path)}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return f"{name}_{spec.describe()}_{digest.hexdigest()[:16]}"


def load_cached(folder: str, key: str, target: torch.device, pin: bool) -> Optional[ImageStore]:
    meta_path = os.path.join(folder, key + ".json")
    if not os.path.isfile(meta_path):
        return None
    with open(meta_path) as f:
        meta = json.load(f)
    array = np.load(os.path.join(folder, key + ".npy"), mmap_mode="r")
    images = torch.empty(array.shape, dtype=torch.uint8, device=target, pin_memory=pin and target.type == "cpu")
    step = max(1, (256 << 20) // max(1, array[0].nbytes if len(array) else 1))
    for start in range(0, len(array), step):
        images[start:start + step].copy_(torch.from_numpy(np.array(array[start:start + step])))
    return ImageStore(images, torch.tensor(meta["original_sizes"], dtype=torch.int64).reshape(-1, 2),
                      torch.tensor(meta["stored_sizes"], dtype=torch.int64).reshape(-1, 2))


def save_cached(folder: str, key: str, store: ImageStore) -> None:
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp_{key}_{os.getpid()}.npy")
    try:
        np.save(tmp, store.images.cpu().numpy())
        os.replace(tmp, os.path.join(folder, key + ".npy"))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    meta = {"original_sizes": store.original_sizes.tolist(), "stored_sizes": store.stored_sizes.tolist()}
    with open(os.path.join(folder, f".tmp_{key}.json"), "w") as f:
        json.dump(meta, f)
    os.replace(os.path.join(folder, f".tmp_{key}.json"), os.path.join(folder, key + ".json"))


class LazyStore:
    """A store built (or loaded from the disk cache) on first use, so `--dry_run` decodes nothing."""

    def __init__(self, name: str, paths: Sequence[str], spec: StoreSpec, target: torch.device, *,
                 decode_device: Optional[torch.device], threads: int, pin: bool, cache_dir: Optional[str]):
        self.name, self.paths, self.spec, self.target = name, list(paths), spec, target
        self.decode_device, self.threads, self.pin, self.cache_dir = decode_device, threads, pin, cache_dir
        self._store: Optional[ImageStore] = None
        self.report = ""

    def get(self) -> ImageStore:
        if self._store is None:
            start = time.time()
            key = cache_key(self.name, self.spec, self.paths) if self.cache_dir else None
            store = load_cached(self.cache_dir, key, self.target, self.pin) if key else None
            how = "loaded from the disk cache"
            if store is None:
                store = build(self.paths, self.spec, self.target, decode_device=self.decode_device,
                              threads=self.threads, pin=self.pin)
                how = f"decoded ({'nvJPEG' if self.decode_device is not None else 'PIL'})"
                if key:
                    try:
                        save_cached(self.cache_dir, key, store)
                    except OSError as err:
                        warnings.warn(f"--data_cache_dir {self.cache_dir}: cannot write the decoded images ({err}); "
                                      "the next run decodes them again")
            self._store = store
            where = "pinned RAM" if self.pin else str(self.target)
            self.report = (f"{self.name}: {len(self.paths)} images {how}, {store.nbytes / 2**30:.2f} GiB in {where}, "
                           f"{time.time() - start:.1f} s")
        return self._store


class StoreTrainLoader:
    """Training batches from a `train` store: the batch sampler's indices, crops drawn batch-wise on `device`.

    Has what utilities/resume.py and utilities/training.py read from a training loader: `batch_sampler`,
    `generator` (here the augmentation's generator, from which every random draw of an epoch comes) and
    `dataset` (the training split: its size is checked on resume).
    """

    def __init__(self, dataset, batch_sampler, store: LazyStore, augment: BatchAugment, device: torch.device):
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self.store = store
        self.augment = augment
        self.generator = augment.generator
        self.device = device
        self.labels = torch.as_tensor(np.asarray(dataset.labels), dtype=torch.int64)
        self._device_labels: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        store = self.store.get()
        if self._device_labels is None:
            self._device_labels = self.labels.to(self.device)
        for indices in self.batch_sampler:
            idx = torch.as_tensor(indices, dtype=torch.int64)
            idx_on_device = to_device(idx, self.device)  # one copy for the labels and a device store
            images = store.gather(idx, self.device, idx_on_device)
            labels = self._device_labels.index_select(0, idx_on_device)
            yield labels, self.augment(images, store.original_sizes[idx], store.stored_sizes[idx]), idx


class StoreEvalLoader:
    """Evaluation batches of `batch_size` from an `eval` store, in order, normalised on `device`; `rows` (a
    range starting at a multiple of `batch_size`, default all) is the part this process embeds."""

    def __init__(self, labels: np.ndarray, store: LazyStore, batch_size: int, convention, device: torch.device,
                 rows: Optional[range] = None):
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.rows = rows if rows is not None else range(len(self.labels))
        self.store = store
        self.batch_size = batch_size
        self.device = device
        self.normalize = convention.normalizer().to(device)

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self):
        stored = self.store.get().images
        for start in range(self.rows.start, self.rows.stop, self.batch_size):
            chunk = stored[start:min(start + self.batch_size, self.rows.stop)]
            chunk = chunk.to(self.device, non_blocking=chunk.is_pinned())
            images_in = self.normalize(TF.to_dtype(chunk, torch.float32, scale=True))
            yield self.labels[start:start + len(chunk)], images_in, torch.arange(start, start + len(chunk))
