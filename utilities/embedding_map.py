"""A 2-D map of the test embeddings at the end of a run: t-SNE (van der Maaten & Hinton 2008), coloured by class.

t-SNE costs O(n log n) per iteration and takes seconds for a few thousand points, so it runs once, at the
end, on a random subsample of at most `--tsne_points` embeddings (drawn from --seed). It writes
`tsne_<Split>.png` and `tsne_<Split>.csv` (x, y, label, index into the split) in the run folder.
"""
from __future__ import annotations

import csv
import os

import numpy as np


def subsample(n_items: int, n_points: int, seed: int) -> np.ndarray:
    if n_items <= n_points:
        return np.arange(n_items)
    return np.sort(np.random.default_rng(seed).choice(n_items, n_points, replace=False))


def tsne(features: np.ndarray, seed: int) -> np.ndarray:
    """n x 2 t-SNE coordinates (PCA initialisation, perplexity 30 or less for small n).

    scikit-learn's Barnes-Hut code runs on one OpenMP thread: with more, on a machine busy with other work,
    the threads spin against each other (2000 points on 2 busy cores: two threads took 2.5 times as long as
    one, measured side by side).
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(features)
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    model = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    with threadpool_limits(limits=1):
        return model.fit_transform(np.asarray(features, dtype=np.float32))


def draw(run_dir: str, split: str, features: np.ndarray, labels: np.ndarray, n_points: int, seed: int) -> str:
    """Compute the map of at most `n_points` of `features` and write the PNG and CSV; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = subsample(len(features), n_points, seed)
    xy = tsne(features[index], seed)
    label = np.asarray(labels)[index]
    with open(os.path.join(run_dir, f"tsne_{split}.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["x", "y", "label", "index"])
        writer.writerows(zip(xy[:, 0].tolist(), xy[:, 1].tolist(), label.tolist(), index.tolist()))
    classes, colour_index = np.unique(label, return_inverse=True)
    fig, ax = plt.subplots(figsize=(7, 7), dpi=100)
    many = len(classes) > 20  # hsv wraps around, so its top value (= the first colour) is left unused
    ax.scatter(xy[:, 0], xy[:, 1], c=colour_index, cmap="hsv" if many else "tab20",
               vmin=0, vmax=len(classes) if many else 19, s=8, linewidths=0)
    ax.set_title(f"{split} embeddings, t-SNE of {len(index)} points, {len(classes)} classes", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path = os.path.join(run_dir, f"tsne_{split}.png")
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
