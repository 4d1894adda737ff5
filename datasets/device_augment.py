"""The training augmentations of datasets/transforms.py, applied to a whole batch at once on its device.

Used with the decoded-image store (datasets/image_store.py): a batch of stored uint8 images goes in, a batch
of normalised float crops comes out, in a fixed number of kernels whatever the batch holds. The random
draws are the reference's:

* `base` (and `big`, crop 256): RandomResizedCrop with torchvision's sampling rule: up to 10 attempts of
  area fraction s ~ U(0.08, 1) and aspect ratio r = exp(U(log 3/4, log 4/3)), w = round(sqrt(s A r)),
  h = round(sqrt(s A / r)), the first attempt that fits the image wins, its top-left corner uniform over
  the positions that keep it inside; no attempt fitting, the central crop of the largest box whose aspect
  ratio is clamped to [3/4, 4/3]. Then a horizontal flip with probability 1/2.
* `adv`: the same, plus RandomGrayscale(0.2) and ColorJitter(0.2, 0.2, 0.2, 0.2) (brightness, contrast and
  saturation factors ~ U(0.8, 1.2), hue shift ~ U(-0.2, 0.2), applied in a random order per image).
* `red`: Resize(resize) + RandomCrop(crop) + flip.

Every box is drawn in the coordinates of the original image (its size as decoded), exactly as torchvision
draws it, then mapped to the stored copy. The crop is resampled to crop x crop by `torchvision.ops.roi_align`
(bilinear, `aligned`: pixel centres at +0.5 as in `resize`); where the box is larger than the output, each
output pixel averages ceil(box / crop)^2 bilinear samples, a box filter in place of torchvision's
antialiasing triangle filter. Stored images are padded by repeating their last row and column, so samples
at the border read the border, as `resize` does.

All draws come from one CPU `torch.Generator` (one `rand` call per batch), whatever the device the images
are on: a seed gives the same crops on the CPU and on a GPU, and the generator's state is all a checkpoint
needs to replay an epoch (utilities/resume.py saves it as the training loader's generator).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torchvision.ops import roi_align

from architectures.inputs import InputConvention

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
ATTEMPTS = 10
GRAYSCALE_P = 0.2
JITTER = 0.2
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def resized_crop_boxes(heights: torch.Tensor, widths: torch.Tensor, uniforms: torch.Tensor,
                       scale=SCALE, ratio=RATIO) -> torch.Tensor:
    """B x 4 (top, left, height, width) RandomResizedCrop boxes for images of the given sizes.

    `uniforms` (B x (2 * ATTEMPTS + 2), U[0, 1)) are the draws: area fractions, log aspect ratios, then the
    top and left positions. Vectorised form of torchvision's `RandomResizedCrop.get_params`, with
    torch.round's half-to-even rounding as Python's `round`.
    """
    H, W = heights.double()[:, None], widths.double()[:, None]
    u_area, u_ratio = uniforms[:, :ATTEMPTS], uniforms[:, ATTEMPTS:2 * ATTEMPTS]
    u_top, u_left = uniforms[:, 2 * ATTEMPTS], uniforms[:, 2 * ATTEMPTS + 1]
    target_area = H * W * (scale[0] + (scale[1] - scale[0]) * u_area)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    w = torch.round(torch.sqrt(target_area * aspect))
    h = torch.round(torch.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)
    found = fits.any(1)
    H, W = H[:, 0], W[:, 0]
    in_ratio = W / H
    too_tall, too_wide = in_ratio < min(ratio), in_ratio > max(ratio)
    fallback_w = torch.where(too_wide, torch.round(H * max(ratio)), W)
    fallback_h = torch.where(too_tall, torch.round(W / min(ratio)), H)
    w = torch.where(found, w.gather(1, first)[:, 0], fallback_w)
    h = torch.where(found, h.gather(1, first)[:, 0], fallback_h)
    top = torch.where(found, torch.floor(u_top * (H - h + 1)), torch.div(H - h, 2, rounding_mode="floor"))
    left = torch.where(found, torch.floor(u_left * (W - w + 1)), torch.div(W - w, 2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], 1)


def resize_crop_boxes(heights: torch.Tensor, widths: torch.Tensor, uniforms: torch.Tensor, resize: int,
                      crop: int) -> torch.Tensor:
    """B x 4 (top, left, height, width) boxes, in original pixels, of Resize(resize) + RandomCrop(crop).

    The resized size is torchvision's: short side `resize`, long side int(resize * long / short); the crop's
    corner is uniform over the resized image. `uniforms`: B x 2 (top, left).
    """
    H, W = heights.double(), widths.double()
    short, long = torch.minimum(H, W), torch.maximum(H, W)
    new_long = torch.floor(resize * long / short)
    rh = torch.where(H <= W, torch.full_like(H, resize), new_long)
    rw = torch.where(H <= W, new_long, torch.full_like(W, resize))
    top = torch.floor(uniforms[:, 0] * (rh - crop + 1))
    left = torch.floor(uniforms[:, 1] * (rw - crop + 1))
    fy, fx = H / rh, W / rw
    return torch.stack([top * fy, left * fx, crop * fy, crop * fx], 1)


def crop_and_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop `boxes` (B x 4 top, left, height, width in the images' pixels) out of `images` (B x C x H x W)
    and resample each to size x size; float32 in the images' value range."""
    top, left, height, width = boxes.to(images.device, torch.float32).unbind(1)
    index = torch.arange(len(images), device=images.device, dtype=torch.float32)
    rois = torch.stack([index, left, top, left + width, top + height], 1)
    return roi_align(images.float(), rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """B x 1 x H x W luma with torchvision's (ITU-R 601) weights."""
    r, g, b = x.unbind(-3)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(-3)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = _per_image(factor)
    return (factor * x + (1.0 - factor) * other).clamp(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, grayscale(x), factor)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of a turn), as PIL and torchvision compute it."""
    r, g, b = x.unbind(-3)
    maxc, minc = x.amax(-3), x.amin(-3)
    delta = maxc - minc
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    return torch.stack([(h / 6.0).remainder(1.0), s, maxc], -3)


# For each sextant of the hue circle, which of (v, p, q, t) is red, green and blue.
_SEXTANTS = torch.tensor(((0, 3, 1), (2, 0, 1), (1, 0, 3), (1, 2, 0), (3, 1, 0), (0, 1, 2))).T  # 3 x 6
_SEXTANTS_ON = {}


def _sextants(device: torch.device) -> torch.Tensor:
    """The table on `device`, copied there once (a copy per call would wait for the device each time)."""
    if device not in _SEXTANTS_ON:
        _SEXTANTS_ON[device] = _SEXTANTS.to(device)
    return _SEXTANTS_ON[device]


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(-3)
    h6 = h * 6.0
    sextant = torch.floor(h6)
    f = h6 - sextant
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    vpqt = torch.stack([v, p, q, t], -3)
    select = _sextants(x.device)[:, sextant.long().remainder(6)].movedim(0, -3)
    return vpqt.gather(-3, select)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    hsv = rgb_to_hsv(x)
    h, s, v = hsv.unbind(-3)
    h = (h + shift.view(-1, 1, 1)).remainder(1.0)
    return hsv_to_rgb(torch.stack([h, s, v], -3))


COLOR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ColorJitter on float images in [0, 1]: `factors` B x 4 (brightness, contrast, saturation, hue shift),
    `order` B x 4 (a permutation of the four operations per image). Every operation is computed for the
    whole batch at each position and kept where the image's order puts it (no data-dependent shapes)."""
    for position in range(len(COLOR_OPS)):
        for k, op in enumerate(COLOR_OPS):
            chosen = _per_image(order[:, position] == k)
            x = torch.where(chosen, op(x, factors[:, k]), x)
    return x


class BatchAugment:
    """The training augmentation of `--augmentation` for batches of stored images.

    `__call__(images, original_sizes, stored_sizes)`: images B x 3 x Hs x Ws uint8 (padded), original_sizes
    and stored_sizes B x 2 (height, width) int64 on the CPU; returns B x 3 x crop x crop float32, normalised
    with the backbone's convention, on the images' device.
    """

    def __init__(self, augmentation: str, crop: int, resize: int, convention: InputConvention, seed: int):
        self.augmentation = augmentation
        self.crop = crop
        self.resize = resize
        self.convention = convention
        self._normalizers = {}
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def n_uniforms(self) -> int:
        """Draws per image: box, flip, and for `adv` grayscale, four jitter factors and four order keys."""
        box = 2 if self.augmentation == "red" else 2 * ATTEMPTS + 2
        return box + 1 + (9 if self.augmentation == "adv" else 0)

    def draw(self, original_sizes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(boxes B x 4 in original pixels, flips B bool, the remaining uniforms) for one batch."""
        u = torch.rand(len(original_sizes), self.n_uniforms, dtype=torch.float64, generator=self.generator)
        heights, widths = original_sizes[:, 0], original_sizes[:, 1]
        if self.augmentation == "red":
            boxes, rest = resize_crop_boxes(heights, widths, u[:, :2], self.resize, self.crop), u[:, 2:]
        else:
            boxes, rest = resized_crop_boxes(heights, widths, u[:, :2 * ATTEMPTS + 2]), u[:, 2 * ATTEMPTS + 2:]
        return boxes, rest[:, 0] < 0.5, rest[:, 1:]

    def __call__(self, images: torch.Tensor, original_sizes: torch.Tensor, stored_sizes: torch.Tensor) -> torch.Tensor:
        boxes, flips, rest = self.draw(original_sizes)
        scale = (stored_sizes.double() / original_sizes.double()).repeat(1, 2)  # (y, x, y, x)
        device = images.device
        params = torch.cat([boxes * scale, flips[:, None].double(), rest], 1).float()
        if device.type == "cuda":
            params = params.pin_memory()
        params = params.to(device, non_blocking=True)
        x = crop_and_resize(images, params[:, :4], self.crop) / 255.0
        if self.augmentation == "adv":
            gray, jitter, order_keys = params[:, 5], params[:, 6:10], params[:, 10:14]
            x = torch.where(_per_image(gray < GRAYSCALE_P), grayscale(x).expand_as(x), x)
            factors = torch.cat([1.0 + JITTER * (2.0 * jitter[:, :3] - 1.0), JITTER * (2.0 * jitter[:, 3:] - 1.0)], 1)
            x = color_jitter(x, factors, order_keys.argsort(1))
        x = torch.where(_per_image(params[:, 4] > 0.5), x.flip(-1), x)
        return self.normalizer(device)(x)

    def normalizer(self, device: torch.device):
        if device not in self._normalizers:
            self._normalizers[device] = self.convention.normalizer().to(device)
        return self._normalizers[device]
