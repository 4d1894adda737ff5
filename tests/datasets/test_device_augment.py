"""Batch-wise augmentation (datasets/device_augment.py) against torchvision's per-image transforms."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import ks_2samp
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

import architectures
from datasets import device_augment as da

# Two-sample Kolmogorov-Smirnov critical value at alpha = 0.001 for n = m = N_DRAWS: 1.949 sqrt(2 / N).
# The draws are seeded, so the test is deterministic; with the rule right the statistics are 0.008-0.015,
# and a wrong rule fails it by far (an aspect-ratio range of (0.7, 1.4) instead of (3/4, 4/3): 0.097).
N_DRAWS = 10000
KS_CRITICAL = 1.949 * math.sqrt(2 / N_DRAWS)


def torchvision_boxes(height, width, n, seed):
    """n draws of torchvision's own RandomResizedCrop.get_params (top, left, height, width)."""
    torch.manual_seed(seed)
    image = torch.zeros(3, height, width)
    params = [RandomResizedCrop.get_params(image, list(da.SCALE), list(da.RATIO)) for _ in range(n)]
    return torch.tensor(params, dtype=torch.float64)


def our_boxes(height, width, n, seed):
    uniforms = torch.rand(n, 2 * da.ATTEMPTS + 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return da.resized_crop_boxes(torch.full((n,), height), torch.full((n,), width), uniforms)


@pytest.mark.parametrize("height,width", [(375, 500), (100, 300)])  # a CUB photograph; one where attempts often fail
def test_resized_crops_have_the_scale_ratio_and_position_distribution_of_torchvision(height, width):
    ours, reference = our_boxes(height, width, N_DRAWS, seed=1), torchvision_boxes(height, width, N_DRAWS, seed=0)
    assert (ours[:, 2:] >= 1).all()
    assert (ours[:, 0] + ours[:, 2] <= height).all() and (ours[:, 1] + ours[:, 3] <= width).all()
    assert torch.equal(ours, ours.round())  # whole pixels, as torchvision's
    for name, statistic in [("area fraction", lambda b: b[:, 2] * b[:, 3] / (height * width)),
                            ("log aspect ratio", lambda b: torch.log(b[:, 3] / b[:, 2])),
                            ("top", lambda b: b[:, 0]), ("left", lambda b: b[:, 1])]:
        ks = ks_2samp(statistic(ours).numpy(), statistic(reference).numpy()).statistic
        assert ks < KS_CRITICAL, (name, ks)


@pytest.mark.parametrize("height,width", [(20, 400), (400, 20)])
def test_when_no_attempt_fits_the_central_crop_is_torchvision_s(height, width):
    # No aspect ratio in [3/4, 4/3] fits these, so every draw takes the fallback: the same box as torchvision's.
    ours, reference = our_boxes(height, width, 50, seed=3), torchvision_boxes(height, width, 50, seed=3)
    assert torch.equal(ours, reference)
    # clamped to 4/3 (wide) or 3/4 (tall): 20 x round(20 * 4/3) = 20 x 27, centred: (400 - 27) // 2 = 186
    expected = [0, 186, 20, 27] if width > height else [186, 0, 27, 20]
    assert ours[0].tolist() == expected


def test_resize_then_random_crop_boxes_are_those_of_torchvision_red():
    uniforms = torch.rand(4000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    boxes = da.resize_crop_boxes(torch.full((4000,), 300), torch.full((4000,), 400), uniforms, resize=256, crop=224)
    # Resize(256) makes 300 x 400 into 256 x int(256 * 400 / 300) = 256 x 341; a 224 crop starts at 0..32 / 0..117.
    resized = TF.resize(torch.zeros(3, 300, 400), 256)
    assert resized.shape[-2:] == (256, 341)
    tops, lefts = boxes[:, 0] * 256 / 300, boxes[:, 1] * 341 / 400
    torch.testing.assert_close(tops, tops.round())
    assert set(tops.round().long().tolist()) == set(range(33)) and set(lefts.round().long().tolist()) == set(range(118))
    torch.testing.assert_close(boxes[:, 2], torch.full((4000,), 224 * 300 / 256, dtype=torch.float64))
    torch.testing.assert_close(boxes[:, 3], torch.full((4000,), 224 * 400 / 341, dtype=torch.float64))


def test_crop_and_resize_copies_whole_pixel_boxes_and_averages_when_halving():
    images = torch.randint(0, 256, (2, 3, 10, 12), dtype=torch.uint8)
    same = da.crop_and_resize(images, torch.tensor([[0.0, 1, 10, 10], [2, 0, 6, 6]]), 10)
    assert torch.equal(same[0], images[0, :, :, 1:11].float())  # a 10 x 10 box at scale 1 is a copy
    halved = da.crop_and_resize(images, torch.tensor([[0.0, 0, 10, 12], [0, 2, 8, 8]]), 4)
    torch.testing.assert_close(halved[1], F.avg_pool2d(images[1:, :, 0:8, 2:10].float(), 2)[0])


COLOR_CASES = [(da.adjust_brightness, TF.adjust_brightness, [0.8, 1.2]),
               (da.adjust_contrast, TF.adjust_contrast, [0.8, 1.15]),
               (da.adjust_saturation, TF.adjust_saturation, [0.85, 1.2]),
               (da.adjust_hue, TF.adjust_hue, [-0.2, 0.13])]


@pytest.mark.parametrize("ours,reference,factors", COLOR_CASES, ids=lambda x: getattr(x, "__name__", ""))
def test_colour_operations_with_a_factor_per_image_equal_torchvision_s(ours, reference, factors):
    images = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    images[0, :, :2] = 0.5  # grey pixels: no hue
    got = ours(images, torch.tensor(factors))
    expected = torch.stack([reference(image, factor) for image, factor in zip(images, factors)])
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)


def test_colour_jitter_applies_each_image_s_operations_in_its_own_order():
    images = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    factors = torch.tensor([[1.1, 0.9, 1.2, 0.1], [0.8, 1.2, 0.9, -0.15], [1.0, 1.1, 0.8, 0.2]])
    order = torch.tensor([[3, 1, 0, 2], [0, 1, 2, 3], [2, 3, 1, 0]])
    got = da.color_jitter(images, factors, order)
    for i in range(3):
        x = images[i:i + 1]
        for k in order[i].tolist():
            x = da.COLOR_OPS[k](x, factors[i:i + 1, k])
        torch.testing.assert_close(got[i:i + 1], x)


def batch_augment(augmentation, seed=0):
    return da.BatchAugment(augmentation, crop=16, resize=18, convention=architectures.input_convention("resnet50"),
                           seed=seed)


def test_a_uniform_image_stays_uniform_through_crops_at_its_padded_border():
    # Stored 20 x 30 images padded to 30 x 30 by repeating the border (image_store): every crop, also one that
    # touches the last row or column, reads only the image's colour; zero padding would darken the border.
    images = torch.zeros(64, 3, 30, 30, dtype=torch.uint8)
    images[..., 0, :, :], images[..., 1, :, :], images[..., 2, :, :] = 200, 100, 50
    sizes = torch.tensor([[20, 30]] * 64)
    out = batch_augment("base")(images, sizes * 3, sizes)  # originals 3x the stored size
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = (torch.tensor([200, 100, 50]) / 255 - mean) / std
    torch.testing.assert_close(out, expected.view(1, 3, 1, 1).expand_as(out), atol=1e-5, rtol=0)


@pytest.mark.parametrize("augmentation", ["base", "adv", "red", "big"])
def test_the_generator_state_replays_a_batch_and_half_the_images_are_flipped(augmentation):
    images = torch.randint(0, 256, (16, 3, 24, 24), dtype=torch.uint8)
    sizes = torch.tensor([[24, 24]] * 16)
    augment = batch_augment(augmentation)
    state = augment.generator.get_state()
    first = augment(images, sizes, sizes)
    augment.generator.set_state(state)
    assert first.shape == (16, 3, 16, 16) and torch.equal(augment(images, sizes, sizes), first)
    assert not torch.equal(augment(images, sizes, sizes), first)
    _, flips, _ = batch_augment(augmentation, seed=5).draw(torch.tensor([[24, 24]] * 200))
    assert 70 < int(flips.sum()) < 130  # Binomial(200, 1/2): mean 100, sd 7


def test_adv_turns_a_fifth_of_the_images_gray():
    images = torch.zeros(400, 3, 24, 24, dtype=torch.uint8)
    images[:, 0] = 255  # pure red: gray images have three equal channels
    sizes = torch.tensor([[24, 24]] * 400)
    out = batch_augment("adv", seed=2)(images, sizes, sizes)
    rgb = out * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) + torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    gray = (rgb.amax(1) - rgb.amin(1)).amax((1, 2)) < 1e-4
    assert 50 < int(gray.sum()) < 110  # Binomial(400, 0.2): mean 80, sd 8
    assert np.unique(np.round(rgb.mean((1, 2, 3)).numpy(), 3)).size > 100  # brightness/contrast vary per image
