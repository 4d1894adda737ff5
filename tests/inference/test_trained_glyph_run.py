"""Issue 14's acceptance: embed.py, search.py and the export on a glyph model trained for one short epoch.

The run trains on 10 glyph classes x 10 fonts (5 steps) and is evaluated on 10 unseen classes; its test
embeddings are recorded as the run computes them. The test images are written as PNG files
(inference/glyph_images.py), embedded with embed.py, searched with search.py, and compared with what the
run evaluated.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

import embed
import evaluation.epoch
import main
import search
from datasets import glyphs
from inference import adapters, glyph_images, index
from inference import run as runs
from inference.export import TOLERANCE
from metrics.neighbours import faiss_neighbours
from utilities import retrieval_grid

FLAGS = ["--dataset", "glyphs", "--arch", "slimresnet18_normalize", "--not_pretrained", "--embed_dim", "16",
         "--loss", "multisimilarity", "--bs", "20", "--samples_per_class", "2", "--n_epochs", "1", "--kernels", "1",
         "--seed", "0", "--tsne_points", "0", "--plot_every", "0", "--no_train_metrics",
         "--evaluation_metrics", "e_recall@1", "e_recall@2", "mAP@R", "nmi"]


REAL_LOAD_ARRAYS = glyphs.load_arrays


def few_glyphs(n_classes: int = 10, per_class: int = 10) -> dict:
    """The glyph arrays cut to the first `n_classes` training and test classes, `per_class` fonts each."""
    arrays = REAL_LOAD_ARRAYS()
    half = len(arrays["class_names"]) // 2
    classes = np.r_[0:n_classes, half:half + n_classes]
    keep = np.concatenate([np.flatnonzero(arrays["labels"] == c)[:per_class] for c in classes])
    return {**arrays, "images": arrays["images"][keep], "labels": np.searchsorted(classes, arrays["labels"][keep]),
            "class_names": arrays["class_names"][classes], "class_codepoints": arrays["class_codepoints"][classes]}


@dataclass
class Trained:
    run_dir: str
    summary: dict
    evaluated: np.ndarray        # the test embeddings the run evaluated, in test-split order
    test_labels: np.ndarray
    image_dir: str               # the test images as PNG files
    image_paths: list            # image_paths[i] is test item i
    index_dir: str               # embed.py's output for image_dir
    embed_stderr: str


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    tmp = tmp_path_factory.mktemp("trained")
    recorded = {}

    def recording(model, loaders, device, opt, desc, **kwargs):
        results, features, labels = real_embed_and_score(model, loaders, device, opt, desc, **kwargs)
        recorded[desc] = (features[opt.evaltypes[0]], labels)
        return results, features, labels

    real_embed_and_score = evaluation.epoch.embed_and_score
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "disabled")
        patch.setattr(glyphs, "load_arrays", few_glyphs)
        patch.setattr(evaluation.epoch, "embed_and_score", recording)
        summary = main.main(FLAGS + ["--save_path", str(tmp / "runs")])
        layout = glyphs.glyphs(None, None)
    image_dir = str(tmp / "glyph_images")
    paths = glyph_images.write_part(layout.testing, layout.class_names, image_dir)
    evaluated, labels = recorded["Embedding Test Data"]
    index_dir = str(tmp / "index")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        embed.main(["--run", summary["run_dir"], "--images", image_dir, "--out", index_dir, "--batch_size", "7",
                    "--workers", "0"])
    return Trained(summary["run_dir"], summary, evaluated, labels, image_dir, [os.path.abspath(p) for p in paths],
                   index_dir, err.getvalue())


def read_index(trained: Trained) -> index.Index:
    return index.read(trained.index_dir)


def split_order(trained: Trained, paths) -> np.ndarray:
    """The test-split position of each indexed path."""
    position = {p: i for i, p in enumerate(trained.image_paths)}
    return np.asarray([position[p] for p in paths])


def test_embed_writes_the_embeddings_the_run_evaluated(trained):
    ix = read_index(trained)
    assert trained.embed_stderr == ""  # no warning, and no progress bar when stderr is not a terminal
    assert ix.embeddings.dtype == np.float32 and ix.embeddings.shape == (100, 16)
    order = split_order(trained, ix.paths)
    assert sorted(order) == list(range(100))
    np.testing.assert_allclose(ix.embeddings, trained.evaluated[order], atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(ix.embeddings, axis=1), 1.0, atol=1e-6)
    # Class folders give the labels: the same partition of the images as the run's test labels.
    pairs = set(zip(ix.labels.tolist(), trained.test_labels[order].tolist()))
    assert len(pairs) == len(ix.class_names) == 10
    assert ix.faiss_index.ntotal == 100 and ix.meta["run"] == os.path.abspath(trained.run_dir)


def test_search_returns_the_neighbours_of_the_metrics_knn(trained, capsys):
    ix = read_index(trained)
    found = search.main(["--index", trained.index_dir, "--query", trained.image_dir, "-k", "5"])
    assert found["queries"] == ix.paths
    expected = next(faiss_neighbours(ix.embeddings, ix.embeddings, 5, self_index=np.arange(100)))[1]
    np.testing.assert_array_equal(found["rows"], expected)
    brute = np.einsum("qkd,qd->qk", ix.embeddings[expected].astype(np.float64), ix.embeddings.astype(np.float64))
    np.testing.assert_allclose(found["similarities"], brute, atol=1e-12)
    assert (np.diff(found["similarities"], axis=1) <= 1e-7).all()
    out = capsys.readouterr().out.splitlines()
    first = ix.paths[0]
    assert out[0] == f"Query {search.shown(first)} ({ix.class_names[ix.labels[0]]}):"
    row = expected[0, 0]
    assert out[1] == f"    1  {brute[0, 0]:.4f}  {search.shown(ix.paths[row])} ({ix.class_names[ix.labels[row]]})"


def test_evaluate_reproduces_the_run_test_metrics(trained, capsys):
    values = search.main(["--index", trained.index_dir, "--evaluate"])["metrics"]
    assert list(values) == ["e_recall@1", "e_recall@2", "mAP@R", "nmi"]  # the run's --evaluation_metrics
    assert values["e_recall@1"] == trained.summary["last"]["test/e_recall@1"]
    assert values["e_recall@2"] == trained.summary["last"]["test/e_recall@2"]
    assert values["mAP@R"] == pytest.approx(trained.summary["last"]["test/mAP@R"], abs=1e-12)
    out = capsys.readouterr().out
    assert "(100 images, 10 classes):" in out and f"  e_recall@1       {values['e_recall@1']:.4f}" in out


def test_a_new_image_is_embedded_with_the_run_and_finds_its_original(trained, tmp_path):
    ix = read_index(trained)
    copy = str(tmp_path / "query.png")
    shutil.copy(ix.paths[3], copy)
    found = search.main(["--index", trained.index_dir, "--query", copy, "-k", "3", "--workers", "0"])
    assert found["rows"][0, 0] == 3
    assert found["similarities"][0, 0] == pytest.approx(1.0, abs=1e-5)


def test_grid_frames_neighbours_by_class(trained, tmp_path):
    ix = read_index(trained)
    grid = str(tmp_path / "grid.png")
    found = search.main(["--index", trained.index_dir, "--query", trained.image_dir, "-k", "4", "--grid", grid,
                         "--grid_queries", "3"])
    layout = retrieval_grid.Layout()
    picture = np.asarray(Image.open(grid).convert("RGB"))
    assert picture.shape[1::-1] == layout.size(3, 5)
    for q in range(3):
        assert tuple(picture[layout.top(q) + 1, layout.left(0) + 1]) == retrieval_grid.QUERY
        for c, row in enumerate(found["rows"][q], 1):
            expected = retrieval_grid.RIGHT if ix.labels[row] == ix.labels[q] else retrieval_grid.WRONG
            assert tuple(picture[layout.top(q) + 1, layout.left(c) + 1]) == expected


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_export_gives_the_index_embeddings(trained, tmp_path, kind, capsys):
    out = str(tmp_path / f"model.{kind}")
    checked = embed.main(["--run", trained.run_dir, "--export", kind, "--out", out])
    assert checked["max_abs_diff"] <= TOLERANCE == 1e-4 and checked["input_shape"] == [3, 32, 32]
    assert os.listdir(tmp_path) == [os.path.basename(out)]
    ix = read_index(trained)
    prepare = adapters.evaluation_input(runs.read_options(trained.run_dir))
    batch = torch.stack([prepare(Image.open(p)) for p in ix.paths[:9]])
    if kind == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": batch.numpy()})[0]
    else:
        got = torch.jit.load(out)(batch).detach().numpy()
    np.testing.assert_allclose(got, ix.embeddings[:9], atol=TOLERANCE, rtol=0)
    assert "(tolerance 1e-04)" in capsys.readouterr().out
