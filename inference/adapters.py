"""The project's public entry points that inference uses, each through one small function.

Training code is changing underneath (issue 9 moves per-epoch evaluation into `evaluation/`, issue 10 adds
`--resolution`, a decoded-image store and device evaluation), so every call into it goes through exactly one
function here. When an entry point moves, re-point the function; nothing else in `inference/` changes.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

import architectures
import datasets
import evaluation
import metrics
from datasets import transforms
from evaluation import evaltypes
from utilities import retrieval_grid

#: Side of the embedded glyph images (datasets/glyphs_data/README.md); other sizes are resized to it.
GLYPH_SIZE = 32


def build_network(opt) -> torch.nn.Module:
    """The run's embedding network (`architectures.select`), untrained: its weights come from a checkpoint."""
    return architectures.select(opt.arch, opt)


class PhotoInput:
    """PIL image -> the network's input tensor, through the run's photo evaluation transform."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image.convert("RGB"))


class GlyphInput:
    """PIL image -> GLYPH_SIZE x GLYPH_SIZE uint8 as an embedded dataset stores it (glyphs: grayscale, 1 x H x W;
    icons: RGB over a white background, 3 x H x W) -> the run's evaluation transform of that dataset."""

    def __init__(self, transform: Callable, mode: str = "L", background: int = 0):
        self.transform, self.mode, self.background = transform, mode, background

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.mode == "RGB":  # transparent pixels take the background, as the icons were built
            canvas = Image.new("RGBA", image.size, (self.background,) * 3 + (255,))
            image = Image.alpha_composite(canvas, image.convert("RGBA"))
        image = image.convert(self.mode)
        if image.size != (GLYPH_SIZE, GLYPH_SIZE):
            image = image.resize((GLYPH_SIZE, GLYPH_SIZE), Image.BILINEAR)
        return self.transform(TF.pil_to_tensor(image))


def evaluation_input(opt) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> input tensor, with the evaluation transform `datasets.select` gives the run's test split."""
    convention = architectures.input_convention(opt.arch)
    if opt.dataset in datasets.EMBEDDED:
        mode, background = datasets.EMBEDDED[opt.dataset]
        return GlyphInput(transforms.glyph(False, convention), mode, background)
    return PhotoInput(transforms.photo(opt, False, convention))


def evaluated_output(opt) -> Tuple[str, Optional[str]]:
    """(evaltype, model output key) of what the run evaluates first (`--evaltypes`, as its retrieval grid
    and t-SNE map do); the key is None for a `Combined_...` evaltype, which mixes several outputs."""
    name = opt.evaltypes[0]
    parsed = evaltypes.parse(name)
    return name, None if parsed.weights else parsed.output_keys[0]


def evaluated_unit_norm(opt) -> bool:
    """Whether the run's evaluated features are already L2-normalised: a `Combined_...` evaltype always is,
    the embedding is with a `_normalize` arch, pooled features never are."""
    name, key = evaluated_output(opt)
    return key is None or (key == "embeds" and architectures.parse_arch(opt.arch).normalize)


def embed(model, loader, device, opt, progress: Optional[bool]) -> Tuple[np.ndarray, np.ndarray]:
    """(N x D float32 features of the run's first evaltype, the first item of each batch) over `loader`,
    with evaluation's embedding function. `progress`: None shows a bar only on a terminal."""
    name, _ = evaluated_output(opt)
    outputs, ids = evaluation.embed(model, loader, device, evaltypes.output_keys([name]), desc="Embedding images",
                                    progress=progress)
    return evaltypes.features([name], outputs)[name], ids


def compute_metrics(embeddings: np.ndarray, labels: np.ndarray, names: Sequence[str], seed: int) -> dict:
    """`metrics.compute_metrics` on the CPU, every image a query against all the others."""
    return metrics.compute_metrics(embeddings, labels, names, seed=seed)


def draw_grid(path: str, rows, title: str) -> None:
    """The retrieval-grid picture (`utilities/retrieval_grid.py`) of `rows`: [(query image, [(neighbour image,
    same class: True, False or None when unknown), ...])], images as PIL images; framed green, red or grey."""
    colours = {True: retrieval_grid.RIGHT, False: retrieval_grid.WRONG, None: retrieval_grid.UNKNOWN}
    retrieval_grid.compose(path, [(query, [(image, colours[same]) for image, same in neighbours])
                                  for query, neighbours in rows], title)
