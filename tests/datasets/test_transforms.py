"""Transforms follow the backbone's input convention (read from --arch), for photographs and glyphs alike."""
import numpy as np
import pytest
import torch
from PIL import Image

import architectures
import datasets
from datasets import transforms

RGB = (10, 100, 200)


@pytest.fixture
def uniform_folder(tmp_path):
    """A `folder` tree of uniformly coloured 300 x 260 photographs (colour RGB), 2 classes x 2 images."""
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.fromarray(np.full((260, 300, 3), RGB, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    return str(tmp_path)


@pytest.mark.parametrize("arch,size,expected", [
    # BN-Inception: 0-255 BGR minus (104, 117, 128)
    ("bninception_frozen_normalize", 224, [200 - 104, 100 - 117, 10 - 128]),
    # EfficientNet-Lite: (255 x - 127) / 128, RGB, its own input size
    ("efficientnet_lite1", 240, [(c - 127) / 128 for c in RGB]),
    # GoogLeNet: ImageNet mean/std, crop 227
    ("googlenet", 227, [(c / 255 - m) / s for c, m, s in zip(RGB, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]),
    ("resnet50_frozen_normalize", 224, [(c / 255 - m) / s for c, m, s in zip(RGB, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]),
    # timm: the model's pretrained_cfg (ViT: mean = std = 0.5)
    ("timm_normalize:vit_tiny_patch16_224", 224, [(c / 255 - 0.5) / 0.5 for c in RGB]),
])
def test_select_applies_the_input_convention_of_the_arch(opt_factory, uniform_folder, arch, size, expected):
    splits = datasets.select("folder", opt_factory("--arch", arch), uniform_folder)
    for key in ("training", "testing"):
        _, image, _ = splits[key][0]
        assert image.shape == (3, size, size)
        torch.testing.assert_close(image.mean((1, 2)), torch.tensor(expected, dtype=torch.float32), atol=1e-4, rtol=0)


@pytest.mark.parametrize("augmentation,train_size,eval_size", [("base", 224, 224), ("adv", 224, 224), ("red", 224, 224),
                                                               ("big", 256, 256)])
def test_augmentation_sizes(opt_factory, uniform_folder, augmentation, train_size, eval_size):
    splits = datasets.select("folder", opt_factory("--augmentation", augmentation), uniform_folder)
    assert splits["training"][0][1].shape == (3, train_size, train_size)
    assert splits["evaluation"][0][1].shape == (3, eval_size, eval_size)


def test_adv_augmentation_can_turn_an_image_gray_and_jitter_it(opt_factory):
    transform = transforms.photo(opt_factory("--augmentation", "adv"), train=True)
    image = Image.fromarray(np.full((64, 64, 3), RGB, dtype=np.uint8))
    torch.manual_seed(0)
    means = torch.stack([transform(image).mean((1, 2)) for _ in range(40)])
    assert means.std(0).min() > 0.05  # colour jitter varies every channel
    base = transforms.photo(opt_factory("--augmentation", "base"), train=True)
    torch.testing.assert_close(base(image).mean((1, 2)), means.new_tensor(
        [(c / 255 - m) / s for c, m, s in zip(RGB, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]), atol=1e-4, rtol=0)


def test_glyphs_follow_the_convention_too(opt_factory):
    convention = architectures.input_convention("bninception")
    glyph = torch.zeros(1, 32, 32, dtype=torch.uint8)
    glyph[:, 8:24, 8:24] = 255
    out = transforms.glyph(False, convention)(glyph)
    assert out.shape == (3, 32, 32)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([-104.0, -117.0, -128.0]))
    torch.testing.assert_close(out[:, 16, 16], torch.tensor([255 - 104.0, 255 - 117.0, 255 - 128.0]))
    splits = datasets.select("glyphs", opt_factory("--arch", "efficientnet_lite0_normalize"), "unused")
    label, image, _ = splits["testing"][0]
    assert image.shape == (3, 32, 32) and image.min() == pytest.approx(-127 / 128)
