"""The index folder: what is written, read back, replaced atomically, and searched (against brute force)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from inference import index


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(embeddings, queries, k, own):
    """Each query's k most similar rows (cosine, ties by smaller row), its own row left out."""
    rows, sims = [], []
    for q, own_row in zip(queries.astype(np.float64), own):
        similarity = embeddings.astype(np.float64) @ q
        order = [r for r in sorted(range(len(embeddings)), key=lambda r: (-similarity[r], r)) if r != own_row][:k]
        rows.append(order + [-1] * (k - len(order)))
        sims.append([similarity[r] for r in order] + [np.nan] * (k - len(order)))
    return np.asarray(rows), np.asarray(sims)


def written(tmp_path, embeddings, classes=None) -> index.Index:
    out = str(tmp_path / "ix")
    paths = [f"/images/{i}.png" for i in range(len(embeddings))]
    index.write(out, embeddings, paths, classes or [""] * len(embeddings), {"run": "/runs/r", "seed": 3})
    return index.read(out)


def test_nearest_equals_brute_force_leaving_out_each_own_row(tmp_path):
    x = unit_rows(40, 6)
    ix = written(tmp_path, x)
    own = np.r_[np.arange(20), -np.ones(5, dtype=np.int64)]
    queries = np.concatenate([x[:20], unit_rows(5, 6, seed=1)])
    similarities, rows = index.nearest(ix, queries, 7, own)
    expected_rows, expected_sims = brute_force(x, queries, 7, own)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(similarities, expected_sims, atol=1e-6)


def test_exact_duplicates_rank_by_row_and_k_beyond_the_index_pads(tmp_path):
    x = unit_rows(4, 3)
    x = np.concatenate([x, x[1:2], x[1:2]])          # rows 4 and 5 duplicate row 1
    ix = written(tmp_path, x)
    similarities, rows = index.nearest(ix, x[[1, 4]], 8, np.array([1, 4]))
    assert rows[0, :2].tolist() == [4, 5] and rows[1, :2].tolist() == [1, 5]
    assert (rows[:, 5:] == -1).all() and np.isnan(similarities[:, 5:]).all()
    np.testing.assert_allclose(similarities[:, :2], 1.0, atol=1e-6)


def test_written_files_and_labels_from_class_names(tmp_path):
    x = unit_rows(5, 4)
    ix = written(tmp_path, x, classes=["dog", "cat", "", "dog", "cat"])
    assert sorted(os.listdir(tmp_path / "ix")) == ["embeddings.npy", "images.csv", "index.faiss", "index.json"]
    assert ix.class_names == ["cat", "dog"] and ix.labels.tolist() == [1, 0, -1, 1, 0] and not ix.labelled
    assert (tmp_path / "ix" / "images.csv").read_text().splitlines() == [
        "path,label,class", "/images/0.png,1,dog", "/images/1.png,0,cat", "/images/2.png,,", "/images/3.png,1,dog",
        "/images/4.png,0,cat"]
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert meta == {"format": 1, "count": 5, "dim": 4, "classes": 2, "run": "/runs/r", "seed": 3}
    np.testing.assert_array_equal(np.load(tmp_path / "ix" / "embeddings.npy"), x)
    assert ix.faiss_index.ntotal == 5


def test_an_interrupted_write_keeps_the_previous_index_and_leaves_no_partial_folder(tmp_path, monkeypatch):
    first = written(tmp_path, unit_rows(5, 4))

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(index.faiss, "write_index", interrupted)
    with pytest.raises(KeyboardInterrupt):
        index.write(str(tmp_path / "ix"), unit_rows(6, 4, seed=1), [f"/{i}" for i in range(6)], [""] * 6, {})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ix"]
    np.testing.assert_array_equal(index.read(str(tmp_path / "ix")).embeddings, first.embeddings)
    second = written(tmp_path, unit_rows(6, 4, seed=1))
    assert len(second.paths) == 6 and os.listdir(tmp_path) == ["ix"]


def test_out_that_is_not_an_index_folder_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "keep.jpg").write_bytes(b"x")
    message = r"^--out .*photos: exists and is not an index folder; choose a new folder name$"
    with pytest.raises(index.UsageError, match=message):
        index.write(str(tmp_path / "photos"), unit_rows(2, 3), ["/a", "/b"], ["", ""], {})
    assert os.listdir(tmp_path / "photos") == ["keep.jpg"]


def test_reading_a_folder_that_is_not_an_index_names_what_is_missing(tmp_path):
    with pytest.raises(index.UsageError, match=r"not an index folder \(missing embeddings.npy, images.csv, "
                                               r"index.faiss, index.json\); make one with python embed.py"):
        index.read(str(tmp_path))
