"""Images are decoded in full before a run (a truncated JPEG has a valid header), once: verdicts are cached by
path, modification time and size."""
import os

import pytest

import datasets
from datasets import image_check


def truncate(path: str) -> None:
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) * 2 // 3])


def test_a_truncated_jpeg_in_the_test_half_is_skipped_with_a_warning_naming_it(opt_factory, cub_tree):
    source = cub_tree(4, 2)
    cut = os.path.join(source, "cub200", "images", "004.Bird_4", "img_1.jpg")
    truncate(cut)
    with pytest.warns(UserWarning, match=rf"skipping unreadable image {cut} \(OSError: .*[Tt]runcated"):
        splits = datasets.select("cub200", opt_factory(), source)
    assert cut not in splits["testing"].paths and len(splits["testing"]) == 3
    for index in range(len(splits["testing"])):  # every image left loads
        splits["testing"][index]


def test_the_second_check_decodes_only_what_changed(tmp_path, monkeypatch, cub_tree):
    source = cub_tree(2, 3)
    paths = sorted(os.path.join(dp, f) for dp, _, files in os.walk(source) for f in files)
    decoded = []
    decode = image_check.decode_problem
    monkeypatch.setattr(image_check, "decode_problem", lambda path: decoded.append(path) or decode(path))

    assert image_check.decode_problems(paths) == [""] * 6 and sorted(decoded) == paths
    decoded.clear()
    assert image_check.decode_problems(paths) == [""] * 6 and decoded == []
    truncate(paths[2])
    reasons = image_check.decode_problems(paths)
    assert decoded == [paths[2]] and reasons[2].startswith("OSError: ") and "runcated" in reasons[2]
    assert reasons[:2] + reasons[3:] == [""] * 5


def test_without_a_writable_cache_every_run_decodes(tmp_path, monkeypatch, cub_tree):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("S2SD_CACHE_DIR", str(blocker / "cache"))
    source = cub_tree(2, 1)
    paths = sorted(os.path.join(dp, f) for dp, _, files in os.walk(source) for f in files)
    assert image_check.decode_problems(paths) == ["", ""]
    assert image_check.decode_problems(paths) == ["", ""]
