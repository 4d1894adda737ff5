"""Mixed precision and kernel choices: `--amp`, `--deterministic`, `--compile`, channels-last, fused optimizers.

Where each precision applies (`--amp bf16|fp16`):

* the backbone's trunk runs under `torch.autocast` (convolutions and matmuls in bf16/fp16, reductions and
  normalisation layers in fp32, as autocast decides);
* everything from the trunk's feature map on is fp32: `architectures.base.EmbeddingNetwork` casts the map to
  fp32 and computes pooling, `last_linear` and the L2 normalisation with autocast switched off, and the
  criterion runs outside autocast, so embeddings, S2SD's head outputs, every similarity matrix,
  softmax/logsumexp and every loss are fp32;
* fp16 gradients can underflow, so `fp16` scales the loss with a `torch.amp.GradScaler` (Micikevicius et al.,
  "Mixed Precision Training", ICLR 2018); bf16 has fp32's exponent range and needs none.

`--amp auto` is bf16 on CUDA and off (fp32) on the CPU, where autocast is slower than fp32 for most
convolutions and the CPU path must keep giving today's numbers.

Kernels: on CUDA `cudnn.benchmark` picks the fastest convolution algorithms for the (fixed) input shapes,
unless `--deterministic`, which keeps bit-exact resumption (cudnn.deterministic, deterministic torch
algorithms, a fixed cuBLAS workspace). The CPU is always deterministic. Convolutional backbones take
channels-last inputs on CUDA (tensor cores read NHWC without transposes); Adam and SGD use their fused CUDA
kernels (one kernel for all parameters, and with fp16 the scaler's inf check stays on the device).
`--compile` compiles the backbone and the criterion with `torch.compile` (`nn.Module.compile`, so state-dict
keys do not change); a criterion that dynamo cannot trace runs eagerly where it breaks.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from utilities.errors import UsageError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


def resolve_amp(choice: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for `--amp choice` on `device` (None: fp32)."""
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if choice == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("--amp bf16: this GPU has no bfloat16 support; use --amp fp16 or --amp off")
    return DTYPES[choice]


def deterministic(opt, device: torch.device) -> bool:
    """`--deterministic`, always true on the CPU."""
    return bool(opt.deterministic) or device.type != "cuda"


def configure_kernels(device: torch.device, exact: bool) -> None:
    """cuDNN and torch algorithm choices; call after `seed_everything` and before the first CUDA kernel.

    `exact` keeps bit-exact runs on CUDA: deterministic cuDNN algorithms without autotuning, deterministic
    torch kernels where they exist (a warning names the ones that do not), and the fixed cuBLAS workspace
    that deterministic cuBLAS needs. Otherwise cuDNN autotunes (`benchmark`), which is faster for the fixed
    shapes of a training run but may pick kernels whose float rounding differs from run to run.
    """
    if device.type != "cuda":
        return
    torch.backends.cudnn.deterministic = exact
    torch.backends.cudnn.benchmark = not exact
    if exact:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(exact, warn_only=True)


def is_convolutional(model: nn.Module) -> bool:
    """More than one 2-D convolution: a CNN (channels-last helps), not a ViT with a patch-embedding conv."""
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


@dataclass
class Precision:
    """How the training step and the evaluation run on one device."""

    device: torch.device
    dtype: Optional[torch.dtype] = None
    channels_last: bool = False
    scaler: Optional[object] = None

    @classmethod
    def build(cls, opt, device: torch.device, model: Optional[nn.Module] = None) -> "Precision":
        dtype = resolve_amp(opt.amp, device)
        channels_last = device.type == "cuda" and model is not None and is_convolutional(model)
        scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        return cls(device, dtype, channels_last, scaler)

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.dtype]

    def autocast(self):
        """The context the backbone runs in: autocast to `dtype`, or nothing for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """A float image batch on the device, channels-last when the backbone takes it."""
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """zero_grad, backward and step; with fp16 through the grad scaler (which skips steps with inf grads)."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> Optional[dict]:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: Optional[dict]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def optimizer_options(optimizer_class, device: torch.device) -> dict:
    """{"fused": True} on CUDA when this torch's `optimizer_class` has a fused kernel, else {}."""
    if device.type == "cuda" and "fused" in inspect.signature(optimizer_class).parameters:
        return {"fused": True}
    return {}


def keep_kernel_options(optimizer: torch.optim.Optimizer, options: dict) -> None:
    """After `load_state_dict` (which copies every group setting from the checkpoint): keep this run's kernel
    choice, so a checkpoint written with fused CUDA kernels resumes on a CPU and the other way round."""
    for group in optimizer.param_groups:
        if "fused" in group:
            group["fused"] = options.get("fused")  # None is the optimizers' own default


def compile_modules(*modules: nn.Module) -> None:
    """`torch.compile` each module in place (`nn.Module.compile`, torch >= 2.2); state-dict keys stay the same."""
    if not hasattr(nn.Module, "compile"):
        warnings.warn(f"--compile: torch {torch.__version__} has no nn.Module.compile; running eagerly")
        return
    for module in modules:
        module.compile()
