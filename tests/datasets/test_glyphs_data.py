"""Checks of the committed, embedded ``glyphs`` dataset (no network, no apt).

Only numpy, json and hashlib are used: the build-time tools (Pillow,
fontTools, Debian font packages) are not needed to run these tests.
"""

import hashlib
import re
from pathlib import Path

import numpy as np

from tests.datasets.embedded import manifest_and_data_fixtures

DATA_DIR = Path(__file__).resolve().parents[2] / "datasets" / "glyphs_data"
NPZ = DATA_DIR / "glyphs.npz"
MANIFEST = DATA_DIR / "MANIFEST.json"
MAX_BYTES = 10 * 1024 * 1024
ARRAYS = ("images", "labels", "families", "class_names", "class_codepoints", "family_names")


manifest, data = manifest_and_data_fixtures(MANIFEST, NPZ)


def _codepoints(entry):
    return [chr(int(tok[2:], 16)) for tok in str(entry).split()]


def test_npz_exists_and_is_small():
    assert NPZ.is_file()
    size = NPZ.stat().st_size
    assert 0 < size <= MAX_BYTES


def test_sha256_matches_manifest(manifest):
    digest = hashlib.sha256(NPZ.read_bytes()).hexdigest()
    assert digest == manifest["sha256"]
    assert manifest["size_bytes"] == NPZ.stat().st_size


def test_arrays_present_with_documented_dtypes_and_shapes(data, manifest):
    assert set(ARRAYS) <= set(data)
    size = manifest["normalisation"]["image_size"]
    assert size == 32
    images, labels, families = data["images"], data["labels"], data["families"]
    assert images.dtype == np.uint8
    assert images.ndim == 3 and images.shape[1:] == (size, size)
    assert labels.dtype == np.int64 and families.dtype == np.int64
    assert labels.shape == families.shape == (images.shape[0],)
    for key in ("class_names", "class_codepoints", "family_names"):
        assert data[key].dtype.kind == "U", key
    assert data["class_names"].shape == data["class_codepoints"].shape
    assert images.shape[0] == manifest["num_images"]


def test_at_least_150_classes_with_40_instances_each(data, manifest):
    labels = data["labels"]
    n_classes = len(data["class_names"])
    assert n_classes >= 150
    assert n_classes == manifest["num_classes"]
    assert labels.min() == 0 and labels.max() == n_classes - 1
    counts = np.bincount(labels, minlength=n_classes)
    assert counts.min() >= 40
    assert [c["count"] for c in manifest["classes"]] == counts.tolist()
    assert [c["id"] for c in manifest["classes"]] == list(range(n_classes))


def test_enough_families(data, manifest):
    n_fam = len(data["family_names"])
    assert n_fam >= 40
    assert n_fam == manifest["num_families"]
    fams = data["families"]
    assert fams.min() >= 0 and fams.max() == n_fam - 1
    assert len(set(data["family_names"].tolist())) == n_fam


def test_no_blank_image(data):
    images = data["images"]
    peak = images.reshape(len(images), -1).max(axis=1)
    assert int(peak.min()) >= 128  # every glyph has real ink
    ink = (images > 64).reshape(len(images), -1).sum(axis=1)
    assert int(ink.min()) >= 4
    # white ink on a black background: the border is (almost) empty
    border = np.concatenate([images[:, 0, :], images[:, -1, :], images[:, :, 0], images[:, :, -1]], axis=1)
    assert float(border.mean()) < 2.0


def test_each_class_family_pair_at_most_once_and_sorted(data):
    labels, families = data["labels"], data["families"]
    n_fam = len(data["family_names"])
    keys = labels * n_fam + families
    assert len(np.unique(keys)) == len(keys)
    assert np.all(np.diff(keys) > 0)  # sorted by (label, family)


def test_class_names_unique_and_consistent(data, manifest):
    names = data["class_names"].tolist()
    assert len(set(names)) == len(names)
    assert all(len(n) == 1 for n in names)
    for name, cps, entry in zip(names, data["class_codepoints"].tolist(), manifest["classes"]):
        chars = _codepoints(cps)
        assert chars[0] == name  # canonical code point first
        assert len(set(chars)) == len(chars)
        assert entry["char"] == name and entry["codepoints"] == cps
    all_cps = [c for cps in data["class_codepoints"].tolist() for c in _codepoints(cps)]
    assert len(set(all_cps)) == len(all_cps)  # a code point belongs to one class


def test_manifest_lists_every_family_with_licence(data, manifest):
    fams = manifest["families"]
    assert [f["index"] for f in fams] == list(range(len(data["family_names"])))
    assert [f["family"] for f in fams] == data["family_names"].tolist()
    used = set(np.unique(data["families"]).tolist())
    assert used == {f["index"] for f in fams}
    for f in fams:
        assert isinstance(f["license"], str) and f["license"].strip(), f["family"]
        assert f["package"].startswith("fonts-"), f["family"]
        assert f["package_version"], f["family"]
        assert re.fullmatch(r"[0-9a-f]{64}", f["sha256"]), f["family"]
        assert f["style"] and f["file"]
        assert f["instances"] == int((data["families"] == f["index"]).sum())
    assert len({f["sha256"] for f in fams}) == len(fams)  # each family is its own font file


def test_homoglyphs_never_in_two_classes(data):
    owner = {}
    for cid, cps in enumerate(data["class_codepoints"].tolist()):
        for ch in _codepoints(cps):
            owner[ch] = cid
    lookalikes = [
        "AΑА", "BΒВ", "EΕЕ", "HΗН", "KΚК", "MΜМ", "PΡР", "TΤТ", "XΧХ", "YΥУ",
        "OΟО0oοо", "lI1ΙІ|", "CСcс", "aаα", "eе", "pрρ", "iіι", "jј", "SЅsѕ",
        "3З", "6б", "ΦФ", "φф", "ΣƩ∑", "ΠП∏", "Δ∆", "μµ", "xх×χ", "vνV", "ΛЛ", "ßβ",
    ]
    for group in lookalikes:
        classes = {owner[c] for c in group if c in owner}
        assert len(classes) <= 1, f"{group}: split over classes {sorted(classes)}"
    # lowercase letters that are only a smaller uppercase are not classes
    for lower in "cosvwxzø" "вджзилмнпцчшщъыьэюя":
        assert lower not in owner, lower
    # and the main scripts are all represented
    assert {"A", "O", "I"} <= set(owner)


def test_split_halves_mix_scripts(data, manifest):
    n = len(data["class_names"])
    half = n // 2
    assert manifest["split"]["train_class_ids"] == [0, half]
    assert manifest["split"]["test_class_ids"] == [half, n]

    def scripts(ids):
        out = set()
        for cps in data["class_codepoints"][ids].tolist():
            cp = int(str(cps).split()[0][2:], 16)
            if 0x0370 <= cp <= 0x03FF:
                out.add("greek")
            elif 0x0400 <= cp <= 0x04FF:
                out.add("cyrillic")
            elif chr(cp).isascii() and chr(cp).isalpha():
                out.add("latin")
        return out

    assert scripts(np.arange(half)) == {"latin", "greek", "cyrillic"}
    assert scripts(np.arange(half, n)) == {"latin", "greek", "cyrillic"}
