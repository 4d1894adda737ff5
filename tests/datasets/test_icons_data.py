"""Checks of the committed, embedded ``icons`` dataset and of its registration (no network, no apt).

The build-time tools (dpkg-deb, rsvg-convert, the Debian icon packages) are not needed: the tests read the
committed data file and manifest, and hash the arrays the way tools/build_icons.py does.
"""
import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

import datasets
from tests.conftest import make_opt
from tests.datasets.embedded import manifest_and_data_fixtures

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "datasets" / "icons_data"
NPZ = DATA_DIR / "icons.npz"
MANIFEST = DATA_DIR / "MANIFEST.json"
MAX_BYTES = 4 * 1024 * 1024
ARRAYS = ("images", "labels", "themes", "class_names", "theme_names")


manifest, data = manifest_and_data_fixtures(MANIFEST, NPZ)


def build_tool():
    spec = importlib.util.spec_from_file_location("build_icons", ROOT / "tools" / "build_icons.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_file_is_small_and_matches_the_manifest(manifest):
    assert 0 < NPZ.stat().st_size <= MAX_BYTES
    assert hashlib.sha256(NPZ.read_bytes()).hexdigest() == manifest["sha256"]
    assert manifest["size_bytes"] == NPZ.stat().st_size


def test_content_hash_is_the_build_tools(data, manifest):
    assert set(data) == set(ARRAYS)
    assert build_tool().arrays_sha256(data) == manifest["content_sha256"]


def test_arrays_have_the_documented_dtypes_and_shapes(data, manifest):
    images, labels, themes = data["images"], data["labels"], data["themes"]
    assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
    assert labels.dtype == np.int64 and themes.dtype == np.int64
    assert labels.shape == themes.shape == (len(images),) == (manifest["num_images"],)
    assert data["class_names"].dtype.kind == "U" and data["theme_names"].dtype.kind == "U"
    assert len(data["class_names"]) == manifest["num_classes"] >= 100
    assert len(data["theme_names"]) == manifest["num_themes"] >= 15


def test_class_balance(data, manifest):
    n_classes = len(data["class_names"])
    counts = np.bincount(data["labels"], minlength=n_classes)
    assert counts.min() >= manifest["selection"]["min_themes_per_class"] == 10
    assert counts.max() <= len(data["theme_names"])
    assert counts.max() / counts.min() <= 3
    assert [c["count"] for c in manifest["classes"]] == counts.tolist()
    assert [c["name"] for c in manifest["classes"]] == data["class_names"].tolist()
    assert len(set(data["class_names"].tolist())) == n_classes


def test_each_class_theme_pair_at_most_once_and_sorted(data, manifest):
    keys = data["labels"] * len(data["theme_names"]) + data["themes"]
    assert np.all(np.diff(keys) > 0)  # unique, sorted by (label, theme)
    names = data["theme_names"].tolist()
    for entry in manifest["classes"]:
        drawn = data["themes"][data["labels"] == entry["id"]]
        assert [names[t] for t in drawn] == entry["themes"]


def test_no_duplicate_images_across_classes(data, manifest):
    """No two images of different classes are equal, nor within the build's near-duplicate bound (mean absolute
    difference < 4); 4 x 4 average pooling never increases that difference, so it screens the pairs."""
    images, labels = data["images"], data["labels"]
    digests = {}
    for image, label in zip(images, labels):
        digests.setdefault(hashlib.sha256(image.tobytes()).hexdigest(), set()).add(int(label))
    assert all(len(owners) == 1 for owners in digests.values())
    bound = manifest["selection"]["duplicate"]
    assert "< 4.0" in bound
    n = len(images)
    full = images.reshape(n, -1).astype(np.int16)
    pooled = images.reshape(n, 4, 8, 4, 8, 3).astype(np.float32).mean(axis=(2, 4)).reshape(n, -1)
    for i in range(n - 1):
        screen = np.nonzero(np.abs(pooled[i + 1:] - pooled[i]).mean(axis=1) < 4.0)[0] + i + 1
        for j in screen:
            if labels[i] != labels[j]:
                assert np.abs(full[i] - full[j]).mean() >= 4.0, (i, j)


def test_no_blank_image(data):
    distance_from_white = 255 - data["images"].reshape(len(data["images"]), -1).min(axis=1).astype(int)
    assert distance_from_white.min() >= 32
    corners = data["images"][:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.mean() > 200  # icons sit on a white background


def test_manifest_names_sources_versions_and_licences(data, manifest):
    themes = manifest["themes"]
    assert [t["theme"] for t in themes] == data["theme_names"].tolist()
    assert [t["instances"] for t in themes] == np.bincount(data["themes"]).tolist()
    versions = {p["package"]: p["version"] for p in manifest["packages"]}
    for theme in themes:
        assert theme["license"].strip() and versions[theme["package"]] == theme["package_version"]
    for package in manifest["packages"]:
        assert len(package["deb_sha256"]) == 64 and int(package["deb_sha256"], 16) >= 0
    dropped = {d["theme"] for d in manifest["dropped_themes"]}
    assert dropped and not dropped & set(data["theme_names"].tolist())
    assert len(manifest["sources"]) == len(data["images"])


def test_split_halves_and_validation_sizes(data, manifest):
    n_classes, labels = len(data["class_names"]), data["labels"]
    half = n_classes // 2
    assert manifest["split"]["train_class_ids"] == [0, half] and manifest["split"]["test_class_ids"] == [half, n_classes]
    splits = datasets.select("icons", make_opt("--dataset", "icons", "--arch", "resnet18"), "")
    assert (splits["training"].n_classes, splits["testing"].n_classes) == (half, n_classes - half)
    assert (len(splits["training"]), len(splits["testing"])) == (int((labels < half).sum()), int((labels >= half).sum()))
    tv = datasets.select("icons", make_opt("--dataset", "icons", "--arch", "resnet18", "--use_tv_split"), "")
    assert tv["training"].n_classes + tv["validation"].n_classes == half
    assert len(tv["training"]) + len(tv["validation"]) == int((labels < half).sum())


def test_items_are_colour_and_augmentation_fills_white(data):
    opt = make_opt("--dataset", "icons", "--arch", "resnet18")
    splits = datasets.select("icons", opt, "")
    first = splits["testing"]
    raw = first.load(0)
    assert raw.shape == (3, 32, 32) and torch.equal(raw, torch.from_numpy(first.images[0].numpy()))
    half = len(data["class_names"]) // 2
    index = int(np.nonzero(data["labels"] >= half)[0][0])
    assert torch.equal(raw.permute(1, 2, 0), torch.from_numpy(data["images"][index]))
    _, image, _ = first[0]
    assert not torch.allclose(image[0], image[1])  # colour channels are kept apart
    torch.manual_seed(0)
    white = splits["training"].transform(torch.full((3, 32, 32), 255, dtype=torch.uint8))
    plain = splits["testing"].transform(torch.full((3, 32, 32), 255, dtype=torch.uint8))
    assert torch.allclose(white, plain)  # a warped white image stays white: the uncovered border is white too


def test_inference_prepares_an_icon_file_as_the_test_split_serves_it(data, tmp_path):
    from PIL import Image

    from inference import adapters

    opt = make_opt("--dataset", "icons", "--arch", "resnet18")
    testing = datasets.select("icons", opt, "")["testing"]
    _, served, _ = testing[0]
    path = tmp_path / "icon.png"
    Image.fromarray(testing.images[0].permute(1, 2, 0).numpy()).save(path)
    prepared = adapters.evaluation_input(opt)(Image.open(path))
    assert torch.equal(prepared, served)
    transparent = Image.new("RGBA", (32, 32), (0, 0, 0, 0))  # nothing drawn: the icons' white background
    assert torch.equal(adapters.evaluation_input(opt)(transparent),
                       testing.transform(torch.full((3, 32, 32), 255, dtype=torch.uint8)))
