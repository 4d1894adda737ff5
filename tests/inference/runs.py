"""Run folders for the inference tests: untrained ones written directly (fast), and a small glyph dataset."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import architectures
from tests.conftest import make_opt
from evaluation.epoch import best_checkpoint_name
from utilities.checkpoint import save_atomic
from utilities.run_folder import jsonable_options, write_parameters

BEST = best_checkpoint_name("testing", "discriminative", "e_recall@1")


def untrained_run(folder: str, *flags: str, checkpoint: bool = True, seed: int = 0) -> str:
    """A run folder as main.py leaves it (parameters.json, a best checkpoint holding {"model", "criterion",
    "epoch", "opt"}), for a randomly initialised glyph network; returns the folder."""
    opt = make_opt("--dataset", "glyphs", "--arch", "slimresnet18_normalize", "--not_pretrained", "--embed_dim", "4",
                   "--seed", str(seed), *flags)
    torch.manual_seed(seed)
    model = architectures.select(opt.arch, opt)
    os.makedirs(folder, exist_ok=True)
    write_parameters(folder, opt)
    if checkpoint:
        save_atomic({"model": model.state_dict(), "criterion": {}, "epoch": 0, "opt": jsonable_options(opt)},
                    os.path.join(folder, BEST))
    return folder


def write_pngs(folder: str, n: int, size=(32, 32), seed: int = 0, classes=("a", "b")) -> list:
    """`n` random grayscale PNGs spread over `<folder>/<class>/img_i.png`; returns their paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = os.path.join(folder, classes[i % len(classes)], f"img_{i}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def run_error(capsys, main, argv) -> str:
    """The one stderr line of a program that stops with exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]
