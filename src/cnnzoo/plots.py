"""The figures cnnzoo draws: confusion matrix, misclassified images, accuracy vs cost, curves.

matplotlib is imported inside each function (with the file-only Agg backend), so importing this
module — and starting ``python train.py`` — stays fast and needs no display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "confusion_matrix_figure",
    "learning_curves_figure",
    "misclassified_figure",
    "save",
    "scatter_figure",
    "trials_figure",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str]) -> Figure:
    """Rows are true classes, columns predictions; cells coloured by the row-normalised rate."""
    plt = _pyplot()
    n = len(class_names)
    size = min(4 + 0.45 * n, 24)
    figure, ax = plt.subplots(figsize=(size, size))
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:  # beyond that, tick labels and counts are unreadable anyway
        ax.set_xticks(range(n), class_names, rotation=90)
        ax.set_yticks(range(n), class_names)
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    colour = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, int(matrix[i, j]), ha="center", va="center", color=colour, fontsize=8
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test)")
    return figure


def misclassified_figure(
    images: np.ndarray,
    true: Sequence[str],
    predicted: Sequence[str],
    confidence: Sequence[float],
) -> Figure:
    """A grid of ``N x H x W x C`` images in [0, 1], each titled ``true → predicted (p)``.

    Drawn as one mosaic in one axes with a caption under each tile: a subplot per image costs
    ~10x more to lay out and render (the whole test report took ~1 s of a ~25 s default run).
    """
    plt = _pyplot()
    n = max(len(images), 1)
    cols = min(8, n)
    rows = math.ceil(n / cols)
    height, width, channels = images.shape[1:] if len(images) else (1, 1, 1)
    pad = max(1, width // 14)
    caption = max(round(height * 0.6), 10)  # blank pixel rows under each tile for its text
    tile_h, tile_w = height + caption + pad, width + pad
    mosaic = np.ones((rows * tile_h, cols * tile_w, channels), dtype=np.float32)
    for k, image in enumerate(images):
        top, left = (k // cols) * tile_h, (k % cols) * tile_w
        mosaic[top : top + height, left : left + width] = image
    figure = plt.figure(figsize=(1.6 * cols, 1.9 * rows + 0.3))
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0 - 0.3 / (1.9 * rows + 0.3)))
    ax.imshow(mosaic.squeeze(-1) if channels == 1 else mosaic, cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    for k, (t, p, c) in enumerate(zip(true, predicted, confidence, strict=False)):
        x = (k % cols) * tile_w + width / 2
        y = (k // cols) * tile_h + height + caption / 2
        ax.text(x, y, f"{t} → {p}\n({c:.2f})", ha="center", va="center", fontsize=7)
    figure.suptitle("Most confident mistakes (true → predicted, confidence)", fontsize=9)
    return figure


def scatter_figure(
    points: Sequence[tuple[str, float, float]], *, xlabel: str, ylabel: str, log_x: bool = True
) -> Figure:
    """One labelled point per ``(label, x, y)``, as the papers plot accuracy against cost."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(7, 5))
    for label, x, y in points:
        ax.scatter(x, y, s=30)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if log_x and all(x > 0 for _, x, _ in points):
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return figure


def learning_curves_figure(
    curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
) -> Figure:
    """``curves[run][metric] = [(epoch, value), ...]``: one panel per metric, one line per run."""
    plt = _pyplot()
    metrics = sorted({metric for run in curves.values() for metric in run})
    figure, axes = plt.subplots(
        1, max(len(metrics), 1), figsize=(5 * max(len(metrics), 1), 4), squeeze=False
    )
    for ax, metric in zip(axes[0], metrics, strict=False):
        for run, run_curves in curves.items():
            if run_curves.get(metric):
                epochs, values = zip(*run_curves[metric], strict=True)
                ax.plot(epochs, values, marker=".", label=run)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    if len(curves) <= 12:
        axes[0][0].legend(fontsize=7)
    return figure


def trials_figure(trials: Sequence[tuple[int, float | None, str]], *, metric: str) -> Figure:
    """A search's metric per trial number, coloured by the trial's state."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(7, 4))
    colours = {"COMPLETE": "tab:blue", "PRUNED": "tab:orange", "FAIL": "tab:red"}
    for state, colour in colours.items():
        xs = [n for n, v, s in trials if s == state and v is not None and math.isfinite(v)]
        ys = [v for n, v, s in trials if s == state and v is not None and math.isfinite(v)]
        if xs:
            ax.scatter(xs, ys, color=colour, label=state.lower())
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return figure
