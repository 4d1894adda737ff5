"""`embed.py --export onnx|torchscript`: the embedding network alone, as a file that runs without this project.

The exported model maps a batch of input tensors (B x 3 x H x W float32, the run's evaluation transform
already applied) to the embeddings `embed.py` writes (B x D float32, L2-normalised). It is the backbone
and its embedding layer only: S2SD's target heads belong to the criterion and are not part of it. The
batch size is free; H and W are those of the sample batch (the evaluation transform's output size).

Every export is checked before it is kept: the exported file, loaded back (onnxruntime for ONNX,
`torch.jit.load` for TorchScript), must give the PyTorch network's embeddings on a sample batch of another
size than the one traced, to `TOLERANCE` in every coordinate. The file is written to a temporary name
and renamed only when the check passes.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Callable, Dict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from inference import adapters, atomic
from utilities.errors import UsageError

#: Largest allowed |exported - PyTorch| of any embedding coordinate (embeddings are unit vectors).
TOLERANCE = 1e-4
#: Packages the ONNX export needs: the exporter (onnx, onnxscript) and the runtime of the check.
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


class ExportMismatch(Exception):
    """The exported model's embeddings differ from PyTorch's by more than TOLERANCE; nothing was written."""


class EmbeddingOnly(torch.nn.Module):
    """images -> the run's evaluated embedding, L2-normalised unless the network already normalises it."""

    def __init__(self, model: torch.nn.Module, key: str, normalise: bool):
        super().__init__()
        self.model, self.key, self.normalise = model, key, normalise

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = self.model(images)[self.key]
        return F.normalize(embeddings, dim=-1) if self.normalise else embeddings


def embedding_only(run) -> EmbeddingOnly:
    name, key = adapters.evaluated_output(run.opt)
    if key is None:
        raise UsageError(f"--export: the run evaluates {name}, a mix of several outputs; export needs a plain "
                         "--evaltypes such as discriminative")
    return EmbeddingOnly(run.model, key, not adapters.evaluated_unit_norm(run.opt)).eval()


def sample_batch(opt, n: int, seed: int = 0) -> torch.Tensor:
    """`n` random 64 x 48 RGB images through the run's evaluation transform."""
    rng = np.random.default_rng(seed)
    prepare = adapters.evaluation_input(opt)
    return torch.stack([prepare(Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))) for _ in range(n)])


def _export_onnx(module: torch.nn.Module, example: torch.Tensor, path: str) -> Callable:
    missing = []
    for package in ONNX_PACKAGES:
        try:
            __import__(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise UsageError(f"--export onnx needs the Python packages {', '.join(ONNX_PACKAGES[:-1])} and "
                         f"{ONNX_PACKAGES[-1]} (missing: {', '.join(missing)}); pip install {' '.join(ONNX_PACKAGES)}")
    import onnxruntime

    batch = torch.export.Dim("batch", min=1)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), path, input_names=["images"], output_names=["embeddings"],
                          dynamic_shapes=({0: batch},), dynamo=True, external_data=False, verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda images: session.run(None, {"images": images.numpy()})[0]


def _export_torchscript(module: torch.nn.Module, example: torch.Tensor, path: str) -> Callable:
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export (FutureWarning in torch 2.14, DeprecationWarning in 2.11)
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        torch.jit.save(torch.jit.trace(module, example), path)
        loaded = torch.jit.load(path, map_location="cpu")
    return lambda images: loaded(images).numpy()


EXPORTERS: Dict[str, Callable] = {"onnx": _export_onnx, "torchscript": _export_torchscript}


@torch.no_grad()
def export(run, kind: str, out: str, example_size: int = 2, check_size: int = 5) -> dict:
    """Export the run's embedding network to `out` as `kind` ("onnx" or "torchscript") and check it on a
    sample batch of `check_size` images (the trace uses `example_size`). Returns what was checked:
    {"max_abs_diff", "tolerance", "input_shape", "output_dim", "checked_images"}."""
    module = embedding_only(run).to("cpu")
    example, check = sample_batch(run.opt, example_size, seed=1), sample_batch(run.opt, check_size, seed=2)
    with atomic.written_file(out) as tmp:
        exported = EXPORTERS[kind](module, example, tmp)
        expected = module(check).numpy()
        got = exported(check)
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        if not diff <= TOLERANCE:
            raise ExportMismatch(f"the exported {kind} model's embeddings differ from PyTorch's by {diff:.2e} "
                                 f"> {TOLERANCE:.0e} on {check_size} sample images; nothing written")
    return {"max_abs_diff": diff, "tolerance": TOLERANCE, "input_shape": list(check.shape[1:]),
            "output_dim": int(expected.shape[1]), "checked_images": check_size}
