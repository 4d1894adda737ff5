"""Which images to embed, and embedding them with a run's network.

`--images` is a folder tree or a list file:

* a folder: every image file below it, at any depth (.jpg .jpeg .png .bmp .gif .tif .tiff .webp, any case;
  hidden files and folders skipped), in sorted path order. An image inside a first-level subfolder has that
  subfolder's name as its class (`<dir>/<class>/.../<image>`); an image directly in the folder has none.
* a list file: one image path per line (relative to the list file's folder, or absolute), optionally
  followed by a tab and its class name; blank lines and lines starting with # are ignored.

Unreadable images are skipped with one warning each, found while the batches load (header and pixels).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from datasets import workers as worker_processes
from datasets.base import IMAGE_SUFFIXES, is_hidden
from inference import adapters
from utilities.errors import UsageError


@dataclass
class ImageList:
    """Absolute image paths and each one's class name ('' when it has none)."""

    paths: List[str]
    classes: List[str]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, rows) -> "ImageList":
        return ImageList([self.paths[i] for i in rows], [self.classes[i] for i in rows])


def find_in_folder(root: str) -> ImageList:
    """Every image file below `root` (sorted); the class is the first-level subfolder, '' at the top level."""
    paths, classes = [], []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not is_hidden(d))
        relative = os.path.relpath(folder, root)
        cls = "" if relative == "." else relative.split(os.sep)[0]
        for name in sorted(files):
            if not is_hidden(name) and name.lower().endswith(IMAGE_SUFFIXES):
                paths.append(os.path.abspath(os.path.join(folder, name)))
                classes.append(cls)
    return ImageList(paths, classes)


def read_list_file(path: str) -> ImageList:
    """`path<TAB>class` or `path` per line; relative paths are relative to the list file's folder."""
    base = os.path.dirname(os.path.abspath(path))
    paths, classes = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            image, _, cls = line.partition("\t")
            paths.append(os.path.join(base, image.strip()))
            classes.append(cls.strip())
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"--images {path}: {len(missing)} listed image(s) do not exist, e.g. {missing[0]}")
    return ImageList(paths, classes)


def find_images(source: str, flag: str = "--images") -> ImageList:
    """The images a folder tree or a list file names; none at all is an error naming `flag`."""
    if os.path.isdir(source):
        images = find_in_folder(source)
    elif os.path.isfile(source):
        if source.lower().endswith(IMAGE_SUFFIXES):
            images = ImageList([os.path.abspath(source)], [""])
        else:
            images = read_list_file(source)
    else:
        raise UsageError(f"{flag} {source}: no such file or folder")
    if not len(images):
        raise UsageError(f"{flag} {source}: no images found ({' '.join(IMAGE_SUFFIXES)}); pass a folder of images, "
                         "with or without class subfolders, or a list file with one image path per line")
    return images


def read_image(path: str, prepare: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """Decode `path` fully and turn it into the network's input."""
    with Image.open(path) as image:
        image.load()
        return prepare(image)


class ImageFiles(Dataset):
    """Item i: (i, input tensor, '') or, when the file cannot be read, (i, None, the reason)."""

    def __init__(self, paths: List[str], prepare: Callable[[Image.Image], torch.Tensor]):
        self.paths = paths
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return index, read_image(self.paths[index], self.prepare), ""
        except Exception as err:  # PIL raises many types for broken files
            return index, None, f"{type(err).__name__}: {err}"


def collate_readable(items):
    """(rows of the readable items, their stacked inputs, [(row, reason)] of the unreadable ones)."""
    good = [(i, x) for i, x, _ in items if x is not None]
    failed = [(i, reason) for i, x, reason in items if x is None]
    rows = torch.tensor([i for i, _ in good], dtype=torch.int64)
    images = torch.stack([x for _, x in good]) if good else None
    return rows, images, failed


class ReadableBatches:
    """Iterates a loader of `collate_readable` batches, warning once per unreadable image and leaving out
    batches with nothing readable. Nothing readable at all is an error naming `source` (e.g. "--images DIR")."""

    def __init__(self, loader: DataLoader, paths: List[str], source: str):
        self.loader, self.paths, self.source = loader, paths, source

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        embedded = 0
        for rows, images, failed in self.loader:
            if len(self.paths) == 1 and failed:
                raise UsageError(f"{self.source}: cannot read this image ({failed[0][1]})")
            for row, reason in failed:
                warnings.warn(f"skipping unreadable image {self.paths[row]} ({reason})")
            if len(rows):
                embedded += len(rows)
                yield rows, images, failed
        if not embedded:
            raise UsageError(f"{self.source}: none of its {len(self.paths)} images could be read")


def embed_images(run, images: ImageList, source: str, device, batch_size: int, workers: int,
                 progress: Optional[bool] = None):
    """(N' x D float32 L2-normalised embeddings, the ImageList of the N' readable images) with the run's
    evaluation transform and network, in batches of `batch_size` loaded by `workers` processes.

    A run whose evaluated features are not unit vectors (an arch without `_normalize`) gets them normalised,
    with a warning: the index then ranks by cosine similarity, the run's c_recall@k, not its e_recall@k."""
    loader = DataLoader(ImageFiles(images.paths, adapters.evaluation_input(run.opt)), batch_size=batch_size,
                        shuffle=False, collate_fn=collate_readable, pin_memory=torch.device(device).type == "cuda",
                        **worker_processes.loader_options(workers))
    embeddings, rows = adapters.embed(run.model, ReadableBatches(loader, images.paths, source), device, run.opt,
                                      progress)
    if not adapters.evaluated_unit_norm(run.opt):
        warnings.warn(f"the run evaluates {run.opt.evaltypes[0]} of --arch {run.opt.arch} without L2 normalisation; "
                      "the index holds it L2-normalised, so neighbours rank by cosine similarity (the run's c_recall@k)")
        embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    return embeddings, images.subset(np.asarray(rows).tolist())
