"""Image transforms of the reference (REFERENCE.md §3.4) and of the embedded datasets (glyphs, icons).

Both end in the backbone's input convention (architectures/inputs.py): its value scale, channel order,
mean and std, and for photographs its crop and resize sizes.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torchvision.transforms import v2

from architectures.inputs import IMAGENET, InputConvention


def sizes(opt, convention: InputConvention = IMAGENET) -> Tuple[int, int]:
    """(crop, resize): the training/evaluation input size and the short side evaluation resizes to first.

    From the backbone (224 and 256 for ResNet and BN-Inception, 227 for GoogLeNet, the pretrained_cfg for
    timm); `big` is the reference's 256 crop (resize >= 256). `--resolution N` sets the crop to N for every
    augmentation and the resize to round(8 N / 7), the ImageNet ratio 256/224.
    """
    if getattr(opt, "resolution", None):
        return opt.resolution, round(opt.resolution * 8 / 7)
    crop = 256 if opt.augmentation == "big" else convention.crop
    return crop, max(convention.resize, crop)


def photo_geometry(opt, train: bool, convention: InputConvention = IMAGENET) -> List[torch.nn.Module]:
    """The steps of `photo` between decoding and float conversion; they take and return uint8 tensors."""
    crop, resize = sizes(opt, convention)
    if not train:
        return [v2.Resize(resize), v2.CenterCrop(crop)]
    if opt.augmentation == "red":
        return [v2.Resize(resize), v2.RandomCrop(crop), v2.RandomHorizontalFlip(0.5)]
    if opt.augmentation == "adv":
        return [v2.RandomResizedCrop(crop), v2.RandomGrayscale(0.2), v2.ColorJitter(0.2, 0.2, 0.2, 0.2),
                v2.RandomHorizontalFlip(0.5)]
    return [v2.RandomResizedCrop(crop), v2.RandomHorizontalFlip(0.5)]


def photo(opt, train: bool, convention: InputConvention = IMAGENET) -> v2.Compose:
    """Natural photographs (PIL RGB) -> the backbone's input.

    train `base`/`big`: RandomResizedCrop(crop) + horizontal flip; `adv`: + RandomGrayscale(0.2) and
    ColorJitter(0.2, 0.2, 0.2, 0.2); `red`: Resize(resize) + RandomCrop(crop) + flip. eval: Resize(resize) +
    CenterCrop(crop). crop and resize: `sizes`.
    """
    return v2.Compose([v2.PILToTensor(), *photo_geometry(opt, train, convention), *to_input(convention)])


def to_input(convention: InputConvention = IMAGENET) -> List[torch.nn.Module]:
    """uint8 images (C x H x W, or a batch) -> float in the backbone's convention."""
    return [v2.ToDtype(torch.float32, scale=True), convention.normalizer()]


def split_at_float(transform: v2.Compose) -> Tuple[v2.Compose, v2.Compose]:
    """(the uint8 steps, the rest) of a `photo` or `glyph` transform: a loader can ship uint8 batches and
    convert them on the device, with the same numbers as the whole transform per image."""
    steps = list(transform.transforms)
    cut = next(i for i, step in enumerate(steps) if isinstance(step, v2.ToDtype))
    return v2.Compose(steps[:cut]), v2.Compose(steps[cut:])


class _Gray3(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:])


def glyph(train: bool, convention: InputConvention = IMAGENET, fill: int = 0, size: Optional[int] = None) -> v2.Compose:
    """Embedded images: glyphs (1 x 32 x 32 uint8, served as 3 channels) or icons (3 x 32 x 32) -> 3 x 32 x 32
    in the backbone's value convention (scale, channel order, mean, std). The size stays 32 for every backbone:
    the pretrained EfficientNet-Lite0 reaches 0.96 Recall@1 on glyphs there, and 64 x 64 would cost 1.4-1.6x
    more per step (docs/datasets_and_backbones.md); `size` (--resolution) resizes them to size x size.

    Training adds a small random affine warp (rotation <= 8 degrees, shift <= 8%, scale 0.9-1.1) whose uncovered
    border takes `fill`, the dataset's background (0: the glyphs' black, 255: the icons' white). No flips: a
    mirrored glyph is often another character (b/d, p/q), a mirrored icon another action (go-next/go-previous).
    """
    steps = [v2.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1), fill=fill)] if train else []
    if size:
        steps.append(v2.Resize((size, size)))
    return v2.Compose([*steps, _Gray3(), *to_input(convention)])
