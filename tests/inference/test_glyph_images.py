"""The glyphs as PNG files: the dataset's exact pixels, one folder per character, in split order."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from datasets import glyphs
from datasets.layout import Part
from inference import glyph_images


def test_pngs_hold_the_dataset_pixels_in_split_order(tmp_path):
    arrays = glyphs.load_arrays()
    names = [f"{c} ({cp})" for c, cp in zip(arrays["class_names"].tolist(), arrays["class_codepoints"].tolist())]
    keep = np.r_[0:3, 200:202]
    part = Part(arrays["images"][keep], arrays["labels"][keep])
    paths = glyph_images.write_part(part, names, str(tmp_path / "out"))
    for path, image, label in zip(paths, part.sources, part.labels):
        assert os.path.basename(os.path.dirname(path)) == arrays["class_codepoints"][label].split()[0]
        np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    assert [os.path.basename(p) for p in paths] == ["00000.png", "00001.png", "00002.png", "00003.png", "00004.png"]
    assert os.listdir(tmp_path) == ["out"]


def test_class_folder_is_the_first_code_point():
    assert glyph_images.class_folder("I (U+0049 U+006C U+0031 U+0399 U+0406)") == "U+0049"


def test_main_writes_the_test_split_and_refuses_an_existing_folder(tmp_path, monkeypatch, capsys):
    arrays = glyphs.load_arrays()
    keep = np.isin(arrays["labels"], [0, 1, 100])
    monkeypatch.setattr(glyphs, "load_arrays", lambda: {**arrays, "images": arrays["images"][keep],
                                                        "labels": arrays["labels"][keep]})
    paths = glyph_images.main([str(tmp_path / "test")])
    assert len(paths) == int((arrays["labels"] == 100).sum())
    assert os.listdir(tmp_path / "test") == [arrays["class_codepoints"][100].split()[0]]
    with pytest.raises(SystemExit):
        glyph_images.main([str(tmp_path / "test")])
    assert capsys.readouterr().err.strip().endswith(f"error: {tmp_path / 'test'} exists; choose a new folder")
