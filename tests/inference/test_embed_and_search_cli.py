"""embed.py and search.py on untrained run folders: inputs, checkpoints, bad input, unreadable images, interrupts."""
from __future__ import annotations

import os
import shutil
import signal
import sys

import numpy as np
import pytest
import torch

import embed
import search
from inference import export, images, index
from inference import run as runs
from tests.inference.runs import BEST, run_error, untrained_run, write_pngs


@pytest.fixture
def run_dir(tmp_path):
    return untrained_run(str(tmp_path / "run"))


def embed_folder(run_dir, folder, out, *flags):
    return embed.main(["--run", run_dir, "--images", str(folder), "--out", str(out), "--workers", "0", *flags])


def test_class_subfolders_give_classes_at_any_depth_and_top_level_images_none(tmp_path):
    for name in ("cat/a.png", "cat/deeper/b.PNG", "dog/c.jpg", "top.png", ".hidden/d.png", "cat/._e.png",
                 "dog/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = images.find_images(str(tmp_path))
    assert [os.path.relpath(p, tmp_path) for p in found.paths] == ["top.png", "cat/a.png", "cat/deeper/b.PNG",
                                                                   "dog/c.jpg"]
    assert found.classes == ["", "cat", "cat", "dog"]


def test_a_list_file_gives_the_folder_embeddings_and_its_classes(tmp_path, run_dir, capsys):
    paths = write_pngs(str(tmp_path / "imgs"), 6)
    embed_folder(run_dir, tmp_path / "imgs", tmp_path / "from_folder")
    listing = tmp_path / "list.txt"
    listing.write_text("# images, relative to this file\n" + "".join(
        f"{os.path.relpath(p, tmp_path)}\tclass {i % 3}\n" for i, p in enumerate(reversed(paths))) + "\n")
    embed.main(["--run", run_dir, "--images", str(listing), "--out", str(tmp_path / "from_list"), "--workers", "0"])
    by_folder, by_list = index.read(str(tmp_path / "from_folder")), index.read(str(tmp_path / "from_list"))
    assert by_list.paths == [os.path.abspath(p) for p in reversed(paths)]
    np.testing.assert_array_equal(by_list.embeddings, by_folder.embeddings[[by_folder.paths.index(p) for p in by_list.paths]])
    assert by_list.class_names == ["class 0", "class 1", "class 2"] and by_list.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_batch_size_and_checkpoint_files(tmp_path, run_dir):
    write_pngs(str(tmp_path / "imgs"), 5)
    embed_folder(run_dir, tmp_path / "imgs", tmp_path / "a", "--batch_size", "5")
    # A checkpoint holding the state dict alone (what best checkpoints may become) loads too.
    state = torch.load(os.path.join(run_dir, BEST), weights_only=True)["model"]
    torch.save(state, os.path.join(run_dir, "checkpoint_weights_only.pth.tar"))
    embed_folder(run_dir, tmp_path / "imgs", tmp_path / "b", "--batch_size", "2", "--checkpoint",
                 "checkpoint_weights_only.pth.tar")
    a, b = index.read(str(tmp_path / "a")), index.read(str(tmp_path / "b"))
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-6)
    assert a.meta["checkpoint"] == BEST and b.meta["checkpoint"] == "checkpoint_weights_only.pth.tar"


def test_unreadable_images_are_skipped_with_one_warning_each(tmp_path, run_dir, capsys):
    write_pngs(str(tmp_path / "imgs"), 3)
    (tmp_path / "imgs" / "a" / "broken.png").write_bytes(b"not a png")
    good = (tmp_path / "imgs" / "a" / "img_0.png").read_bytes()
    (tmp_path / "imgs" / "b" / "truncated.png").write_bytes(good[:len(good) // 2])
    written = embed_folder(run_dir, tmp_path / "imgs", tmp_path / "out")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"embed.py: warning: skipping unreadable image {tmp_path / 'imgs' / 'a' / 'broken.png'} "
                             "(UnidentifiedImageError: ")
    assert err[1].startswith(f"embed.py: warning: skipping unreadable image {tmp_path / 'imgs' / 'b' / 'truncated.png'} (")
    assert written == {"images": 3, "skipped": 2, "dim": 4, "classes": 2, "labelled": 3}
    assert [os.path.basename(p) for p in index.read(str(tmp_path / "out")).paths] == ["img_0.png", "img_2.png",
                                                                                       "img_1.png"]


def test_a_run_without_l2_normalisation_is_indexed_normalised_with_a_warning(tmp_path, capsys):
    run_dir = untrained_run(str(tmp_path / "run"), "--arch", "slimresnet18")
    write_pngs(str(tmp_path / "imgs"), 3)
    embed_folder(run_dir, tmp_path / "imgs", tmp_path / "out")
    assert capsys.readouterr().err.splitlines() == [
        "embed.py: warning: the run evaluates discriminative of --arch slimresnet18 without L2 normalisation; the index "
        "holds it L2-normalised, so neighbours rank by cosine similarity (the run's c_recall@k)"]
    np.testing.assert_allclose(np.linalg.norm(index.read(str(tmp_path / "out")).embeddings, axis=1), 1.0, atol=1e-6)


def test_photo_runs_use_the_photo_evaluation_transform(tmp_path):
    run_dir = untrained_run(str(tmp_path / "run"), "--dataset", "cub200")
    opt = runs.read_options(run_dir)
    prepare = images.adapters.evaluation_input(opt)
    write_pngs(str(tmp_path / "imgs"), 1, size=(300, 260))
    x = images.read_image(str(tmp_path / "imgs" / "a" / "img_0.png"), prepare)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32


def test_an_interrupt_keeps_the_previous_index_and_exits_130(tmp_path, run_dir, monkeypatch, capsys):
    write_pngs(str(tmp_path / "imgs"), 3)
    embed_folder(run_dir, tmp_path / "imgs", tmp_path / "out")
    before = (tmp_path / "out" / "embeddings.npy").read_bytes()
    write_pngs(str(tmp_path / "imgs"), 5, seed=1)

    def terminated(*args):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(index.faiss, "write_index", terminated)
    with pytest.raises(SystemExit) as exit_info:
        embed_folder(run_dir, tmp_path / "imgs", tmp_path / "out")
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.splitlines()[-1] == "embed.py: interrupted; nothing half-written was left"
    assert sorted(os.listdir(tmp_path)) == ["imgs", "out", "run"]
    assert (tmp_path / "out" / "embeddings.npy").read_bytes() == before
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize("case", ["missing run", "no parameters", "no checkpoint", "other checkpoint", "empty folder",
                                  "unreadable image", "missing listed image", "out is a folder of photos"])
def test_bad_input_gets_one_line_and_exit_2(tmp_path, run_dir, capsys, case):
    (tmp_path / "empty").mkdir()
    write_pngs(str(tmp_path / "imgs"), 2)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    argv = {"run": run_dir, "images": str(tmp_path / "imgs"), "out": str(tmp_path / "out")}
    expected = ""
    if case == "missing run":
        argv["run"] = str(tmp_path / "nowhere")
        expected = f"--run {tmp_path / 'nowhere'}: no such folder; pass a run folder such as Training_Results/glyphs/<run>"
    elif case == "no parameters":
        argv["run"] = str(tmp_path / "empty")
        expected = f"--run {tmp_path / 'empty'}: no parameters.json in this folder; is it a run folder made by main.py?"
    elif case == "no checkpoint":
        argv["run"] = untrained_run(str(tmp_path / "unfinished"), checkpoint=False)
        expected = (f"--run {argv['run']}: no checkpoint (checkpoint_*.pth.tar) in this folder; a run writes them at "
                    "the end of each epoch, so this one did not finish one")
    elif case == "other checkpoint":
        argv["checkpoint"] = "last"
        expected = (f"--checkpoint last: {run_dir} has no checkpoint_last.pth.tar; it has {BEST} "
                    "(pass --checkpoint best or last, or one of these file names)")
    elif case == "empty folder":
        argv["images"] = str(tmp_path / "empty")
        expected = (f"--images {tmp_path / 'empty'}: no images found (.jpg .jpeg .png .bmp .gif .tif .tiff .webp); pass "
                    "a folder of images, with or without class subfolders, or a list file with one image path per line")
    elif case == "unreadable image":
        argv["images"] = str(tmp_path / "bad.png")
        expected = f"--images {tmp_path / 'bad.png'}: cannot read this image ("
    elif case == "missing listed image":
        (tmp_path / "list.txt").write_text("imgs/a/img_0.png\nimgs/a/gone.png\n")
        argv["images"] = str(tmp_path / "list.txt")
        expected = f"--images {tmp_path / 'list.txt'}: 1 listed image(s) do not exist, e.g. {tmp_path / 'imgs/a/gone.png'}"
    elif case == "out is a folder of photos":
        argv["out"] = str(tmp_path / "imgs")
        expected = f"--out {tmp_path / 'imgs'}: exists and is not an index folder; choose a new folder name"
    line = run_error(capsys, embed.main, [x for k, v in argv.items() for x in (f"--{k}", v)] + ["--workers", "0"])
    assert line.startswith(f"embed.py: error: {expected}")
    assert not os.path.exists(tmp_path / "out")


def test_device_cuda_without_cuda_is_one_line(tmp_path, run_dir, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    write_pngs(str(tmp_path / "imgs"), 1)
    line = run_error(capsys, embed.main, ["--run", run_dir, "--images", str(tmp_path / "imgs"), "--out",
                                          str(tmp_path / "out"), "--device", "cuda"])
    assert line == "embed.py: error: --device cuda: no CUDA device is available on this machine; use --device cpu"


def test_search_bad_input(tmp_path, run_dir, capsys):
    write_pngs(str(tmp_path / "imgs"), 3, classes=("only",))
    embed_folder(run_dir, tmp_path / "imgs", tmp_path / "ix")
    (tmp_path / "bad.png").write_bytes(b"broken")
    capsys.readouterr()
    cases = [
        (["--query", str(tmp_path / "bad.png")], f"--query {tmp_path / 'bad.png'}: cannot read this image "
                                                 "(UnidentifiedImageError: "),
        (["--query", str(tmp_path / "nothing.png")], f"--query {tmp_path / 'nothing.png'}: no such file or folder"),
        (["--evaluate"], f"--evaluate: {tmp_path / 'ix'} holds one class only; the metrics need at least two"),
        (["--evaluate", "--metrics", "recall"], "--evaluate: "),
        ([], "give --query IMAGE_OR_DIR, --evaluate, or both"),
        (["--query", str(tmp_path / "imgs"), "-k", "0"], "-k and --grid_queries must be at least 1"),
        (["--evaluate", "--grid", "g.png"], "--grid draws the neighbours of --query; give --query too"),
    ]
    for flags, expected in cases:
        line = run_error(capsys, search.main, ["--index", str(tmp_path / "ix"), *flags, "--workers", "0"])
        assert line.startswith(f"search.py: error: {expected}"), line
    line = run_error(capsys, search.main, ["--index", str(tmp_path), "--evaluate"])
    assert line.startswith(f"search.py: error: --index {tmp_path}: not an index folder (missing ")


def test_search_evaluate_needs_every_image_classified_and_names_the_metrics_flag(tmp_path, run_dir, capsys):
    write_pngs(str(tmp_path / "imgs"), 4)
    shutil.copy(tmp_path / "imgs" / "a" / "img_0.png", tmp_path / "imgs" / "loose.png")
    embed_folder(run_dir, tmp_path / "imgs", tmp_path / "ix")
    capsys.readouterr()
    line = run_error(capsys, search.main, ["--index", str(tmp_path / "ix"), "--evaluate"])
    assert line == (f"search.py: error: --evaluate: 1 of the 5 images in {tmp_path / 'ix'} have no class; embed a folder "
                    "with one subfolder per class, or a list file with a class column")
    os.remove(tmp_path / "imgs" / "loose.png")
    embed_folder(run_dir, tmp_path / "imgs", tmp_path / "ix")
    capsys.readouterr()
    line = run_error(capsys, search.main, ["--index", str(tmp_path / "ix"), "--evaluate", "--metrics", "recall"])
    assert line.startswith("search.py: error: --metrics: unknown metric 'recall'; choose from: ")


def test_export_without_onnx_says_what_to_install(tmp_path, run_dir, capsys, monkeypatch):
    for package in ("onnx", "onnxscript"):  # onnxscript cannot import without onnx
        monkeypatch.setitem(sys.modules, package, None)
    line = run_error(capsys, embed.main, ["--run", run_dir, "--export", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert line == ("embed.py: error: --export onnx needs the Python packages onnx, onnxscript and onnxruntime "
                    "(missing: onnx, onnxscript); pip install onnx onnxscript onnxruntime")
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_an_export_that_does_not_match_is_not_kept(tmp_path, run_dir, capsys, monkeypatch):
    monkeypatch.setattr(export, "TOLERANCE", -1.0)
    with pytest.raises(SystemExit) as exit_info:
        embed.main(["--run", run_dir, "--export", "torchscript", "--out", str(tmp_path / "m.pt")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("embed.py: error: the exported torchscript model's embeddings differ "
                                               "from PyTorch's by ")
    assert err[0].endswith("on 5 sample images; nothing written")
    assert sorted(os.listdir(tmp_path)) == ["run"]
