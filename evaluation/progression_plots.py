"""Progression plots: one PNG per logged metric group, `Progression_Plots/Graph_<Split>_<group>.png`.

Each plot reads the group's CSV (`CSV_Logs/Data_<Split>_<group>.csv`: an `epoch` column, then one column per
segment) and draws one curve per segment over the epochs. Any number of curves is fine: up to 10 take the
tab10 colours, more take evenly spaced hues (the reference had 9 colours and crashed on a tenth). The title
gives each segment's best value and its epoch (lowest for losses and times, highest otherwise).
"""
from __future__ import annotations

import csv
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from evaluation.logger import lower_is_better

PLOT_DIR = "Progression_Plots"


def curve_colours(n: int) -> List[Tuple[float, float, float]]:
    """n distinct RGB colours in [0, 1]."""
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i)[:3] for i in range(n)]
    return [matplotlib.colors.hsv_to_rgb((i / n, 0.9, 0.85)) for i in range(n)]


def read_group(path: str) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """(epochs, {segment: values}) from one CSV log."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], np.asarray(rows[1:], dtype=np.float64).reshape(-1, len(rows[0]))
    return body[:, 0].astype(int), {name: body[:, i] for i, name in enumerate(header[1:], start=1)}


def plot_group(path: str, group: str, title: str, epochs: Sequence[int], curves: Dict[str, Sequence[float]]) -> None:
    """Draw `curves` (one line per entry, in order) over `epochs` into the PNG `path`; `group` sets the direction
    of "best"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    best = []
    for (name, values), colour in zip(curves.items(), curve_colours(len(curves))):
        values = np.asarray(values, dtype=np.float64)
        ax.plot(epochs, values, color=colour, linewidth=2.5, marker="o" if len(values) < 30 else None,
                markersize=3, label=name)
        if np.isfinite(values).any():
            i = int(np.nanargmin(values) if lower_is_better(name) else np.nanargmax(values))
            best.append(f"{name} {values[i]:.4g} (ep {epochs[i]})")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title(title + "\nbest: " + ", ".join(best[:4]) + (" ..." if len(best) > 4 else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=max(1, len(curves) // 8), loc="best")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def draw_all(run_dir: str) -> List[str]:
    """Redraw the plot of every CSV log in `run_dir`; returns the PNG paths."""
    csv_dir = os.path.join(run_dir, "CSV_Logs")
    out_dir = os.path.join(run_dir, PLOT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name in sorted(os.listdir(csv_dir)):
        if not (name.startswith("Data_") and name.endswith(".csv")):
            continue
        epochs, curves = read_group(os.path.join(csv_dir, name))
        if not len(epochs):
            continue
        stem = name[len("Data_"):-len(".csv")]
        split, _, group = stem.partition("_")
        path = os.path.join(out_dir, f"Graph_{stem}.png")
        plot_group(path, group, f"{split}: {group}", epochs, curves)
        written.append(path)
    return written
