"""Image transforms of the reference (REFERENCE.md §3.4) and of the embedded datasets (glyphs, icons).

Both end in the backbone's input convention (architectures/inputs.py): its value scale, channel order,
mean and std, and for photographs its crop and resize sizes.
"""
from __future__ import annotations

import torch
from torchvision.transforms import v2

from architectures.inputs import IMAGENET, InputConvention


def photo(opt, train: bool, convention: InputConvention = IMAGENET) -> v2.Compose:
    """Natural photographs (PIL RGB) -> the backbone's input.

    train `base`/`big`: RandomResizedCrop(crop) + horizontal flip; `adv`: + RandomGrayscale(0.2) and
    ColorJitter(0.2, 0.2, 0.2, 0.2); `red`: Resize(resize) + RandomCrop(crop) + flip. eval: Resize(resize) +
    CenterCrop(crop). crop and resize come from the backbone (224 and 256 for ResNet and BN-Inception,
    227 for GoogLeNet, the pretrained_cfg for timm); `big` is the reference's 256 crop (resize >= 256).
    """
    crop = 256 if opt.augmentation == "big" else convention.crop
    resize = max(convention.resize, crop)
    if not train:
        steps = [v2.Resize(resize), v2.CenterCrop(crop)]
    elif opt.augmentation == "red":
        steps = [v2.Resize(resize), v2.RandomCrop(crop), v2.RandomHorizontalFlip(0.5)]
    elif opt.augmentation == "adv":
        steps = [v2.RandomResizedCrop(crop), v2.RandomGrayscale(0.2), v2.ColorJitter(0.2, 0.2, 0.2, 0.2),
                 v2.RandomHorizontalFlip(0.5)]
    else:
        steps = [v2.RandomResizedCrop(crop), v2.RandomHorizontalFlip(0.5)]
    return v2.Compose([v2.PILToTensor(), *steps, v2.ToDtype(torch.float32, scale=True), convention.normalizer()])


class _Gray3(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(3, *x.shape[1:])


def glyph(train: bool, convention: InputConvention = IMAGENET, fill: int = 0) -> v2.Compose:
    """Embedded images: glyphs (1 x 32 x 32 uint8, served as 3 channels) or icons (3 x 32 x 32) -> 3 x 32 x 32
    in the backbone's value convention (scale, channel order, mean, std). The size stays 32 for every backbone:
    the pretrained EfficientNet-Lite0 reaches 0.96 Recall@1 on glyphs there, and 64 x 64 would cost 1.4-1.6x
    more per step (docs/datasets_and_backbones.md).

    Training adds a small random affine warp (rotation <= 8 degrees, shift <= 8%, scale 0.9-1.1) whose uncovered
    border takes `fill`, the dataset's background (0: the glyphs' black, 255: the icons' white). No flips: a
    mirrored glyph is often another character (b/d, p/q), a mirrored icon another action (go-next/go-previous).
    """
    steps = [v2.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1), fill=fill)] if train else []
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), _Gray3(), convention.normalizer()])
