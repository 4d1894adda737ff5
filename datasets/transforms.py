"""Image transforms of the reference (REFERENCE.md §3.4) and of the embedded glyphs."""
from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def photo(opt, train: bool) -> v2.Compose:
    """Natural photographs (PIL RGB) -> normalised tensors.

    train `base`/`big`: RandomResizedCrop(crop) + horizontal flip; `adv`: + RandomGrayscale(0.2) and
    ColorJitter(0.2, 0.2, 0.2, 0.2); `red`: Resize(256) + RandomCrop(crop) + flip. eval: Resize(256) +
    CenterCrop(crop). crop = 224, or 256 with `big`.
    """
    crop = 256 if opt.augmentation == "big" else 224
    if not train:
        steps = [v2.Resize(256), v2.CenterCrop(crop)]
    elif opt.augmentation == "red":
        steps = [v2.Resize(256), v2.RandomCrop(crop), v2.RandomHorizontalFlip(0.5)]
    elif opt.augmentation == "adv":
        steps = [v2.RandomResizedCrop(crop), v2.RandomGrayscale(0.2), v2.ColorJitter(0.2, 0.2, 0.2, 0.2),
                 v2.RandomHorizontalFlip(0.5)]
    else:
        steps = [v2.RandomResizedCrop(crop), v2.RandomHorizontalFlip(0.5)]
    return v2.Compose([v2.PILToTensor(), *steps, v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class _Gray3(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(3, *x.shape[1:])


def glyph(train: bool) -> v2.Compose:
    """Glyphs (1 x H x W uint8) -> 3 x H x W normalised tensors.

    Training adds a small random affine warp (rotation <= 8 degrees, shift <= 8%, scale 0.9-1.1). No flips:
    a mirrored glyph is often another character (b/d, p/q).
    """
    steps = [v2.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1))] if train else []
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), _Gray3(),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
