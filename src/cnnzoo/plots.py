"""The figures cnnzoo draws: image grids (misclassified test images, a training batch), the
confusion matrix, accuracy against cost, learning curves and an Optuna study's plots.

matplotlib is imported inside each function (with the file-only Agg backend), so importing this
module — and starting ``python train.py`` — stays fast and needs no display.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

__all__ = [
    "confusion_matrix_figure",
    "displayable",
    "image_grid_figure",
    "learning_curves_figure",
    "misclassified_figure",
    "save",
    "scatter_figure",
    "study_figures",
    "target_caption",
]

CAPTION_POINTS = 7
# beyond this many points a scatter plot names them in a legend rather than next to each point
MAX_POINT_LABELS = 12


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Optuna's study plots draw a categorical choice (data.batch_size: 32, 64, ...) as the
    # categories it is; matplotlib says so in an info line per axis, which is no news
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)
    return plt


def save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def displayable(
    images: np.ndarray, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> np.ndarray:
    """Undo a normalisation: ``N x C x H x W`` → ``N x H x W x C`` in [0, 1].

    Without ``mean``/``std`` (or with ones of another channel count) each image is stretched to
    [0, 1] instead.
    """
    images = np.asarray(images, dtype=np.float32)
    channels = images.shape[1]
    if mean is not None and std is not None and len(mean) == len(std) == channels:
        shape = (1, channels, 1, 1)
        images = images * np.asarray(std, np.float32).reshape(shape)
        images = images + np.asarray(mean, np.float32).reshape(shape)
    else:
        low = images.min(axis=(1, 2, 3), keepdims=True)
        high = images.max(axis=(1, 2, 3), keepdims=True)
        images = (images - low) / np.maximum(high - low, 1e-8)
    return images.clip(0, 1).transpose(0, 2, 3, 1)


def target_caption(target: Any, class_names: Sequence[str]) -> str:
    """A class index's name; for a soft (MixUp/CutMix) target its two strongest classes and
    their weights, one per line (a sample the mix left whole is just its class)."""
    weights = np.asarray(target, dtype=np.float64)
    if weights.ndim == 0:
        return str(class_names[int(weights)])
    order = np.argsort(weights)[::-1][:2]
    if weights[order[0]] > 0.995:
        return str(class_names[int(order[0])])
    return "\n".join(f"{class_names[int(c)]} {weights[c]:.2f}" for c in order if weights[c] > 0.005)


def _grid_columns(n: int, max_cols: int) -> int:
    """Columns for ``n`` tiles: a full last row if some width in the upper half of ``max_cols``
    gives one, otherwise rows as evenly filled as possible."""
    if n <= max_cols:
        return max(n, 1)
    for cols in range(max_cols, (max_cols + 1) // 2 - 1, -1):
        if n % cols == 0:
            return cols
    rows = math.ceil(n / max_cols)
    return math.ceil(n / rows)


def image_grid_figure(
    images: np.ndarray,
    captions: Sequence[str],
    *,
    title: str,
    max_cols: int = 8,
    tile_inches: float = 1.3,
) -> Figure:
    """``N x H x W x C`` images in [0, 1] as one mosaic, each with its caption under it.

    One axes holds the whole mosaic (a subplot per image costs ~10x more to lay out and
    render); the figure is sized to the mosaic, so there is no blank margin, and the column
    count is chosen to leave as few empty tiles as possible.
    """
    plt = _pyplot()
    n = len(images)
    if n == 0:
        figure = plt.figure(figsize=(4, 1))
        figure.text(0.5, 0.5, f"{title}: none", ha="center", va="center")
        return figure
    height, width, channels = images.shape[1:]
    cols = _grid_columns(n, max_cols)
    rows = math.ceil(n / cols)
    pad = max(1, width // 14)
    inches_per_pixel = tile_inches / (width + pad)
    lines = max((caption.count("\n") + 1 for caption in captions), default=0)
    caption_inches = 0.06 + lines * CAPTION_POINTS * 1.3 / 72 if lines else 0.0
    caption = round(caption_inches / inches_per_pixel)
    tile_h, tile_w = height + caption + pad, width + pad
    mosaic = np.ones((rows * tile_h - pad, cols * tile_w - pad, channels), dtype=np.float32)
    for k, image in enumerate(images):
        top, left = (k // cols) * tile_h, (k % cols) * tile_w
        mosaic[top : top + height, left : left + width] = image
    title_inches = 0.3
    image_inches = mosaic.shape[0] * inches_per_pixel
    figure = plt.figure(figsize=(mosaic.shape[1] * inches_per_pixel, image_inches + title_inches))
    ax = figure.add_axes((0.0, 0.0, 1.0, image_inches / (image_inches + title_inches)))
    ax.imshow(
        mosaic.squeeze(-1) if channels == 1 else mosaic,
        cmap="gray",
        vmin=0,
        vmax=1,
        aspect="auto",
        interpolation="nearest",
    )
    ax.axis("off")
    for k, text in enumerate(captions[:n]):
        x = (k % cols) * tile_w + width / 2
        y = (k // cols) * tile_h + height + caption / 2
        ax.text(x, y, text, ha="center", va="center", fontsize=CAPTION_POINTS, linespacing=1.1)
    figure.suptitle(title, fontsize=9, y=1.0 - 0.05 * title_inches / figure.get_figheight())
    return figure


def _wrap_arrow(true: str, predicted: str, limit: int = 18) -> str:
    text = f"{true} → {predicted}"
    return text if len(text) <= limit else f"{true} →\n{predicted}"


def misclassified_figure(
    images: np.ndarray,
    true: Sequence[str],
    predicted: Sequence[str],
    confidence: Sequence[float],
) -> Figure:
    """A grid of ``N x H x W x C`` images in [0, 1], each captioned ``true → predicted`` and the
    predicted class's probability."""
    captions = [
        f"{_wrap_arrow(t, p)}\n{c:.2f}" for t, p, c in zip(true, predicted, confidence, strict=True)
    ]
    return image_grid_figure(
        images, captions, title="Most confident mistakes (true → predicted, probability)"
    )


def confusion_matrix_figure(
    matrix: np.ndarray, class_names: Sequence[str], *, title: str = "Confusion matrix (test)"
) -> Figure:
    """Rows are true classes, columns predictions; cells coloured by the row-normalised rate
    (the colour bar), annotated with the counts."""
    plt = _pyplot()
    n = len(class_names)
    size = min(4 + 0.45 * n, 24)
    figure, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    colour_bar = figure.colorbar(image, ax=ax, shrink=0.8)
    colour_bar.set_label("share of the true class's images")
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
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return figure


def _overlaps(box: Any, others: Sequence[Any]) -> bool:
    return any(box.overlaps(other) for other in others)


def _label_points(ax: Axes, points: Sequence[tuple[str, float, float]]) -> bool:
    """Write each label beside its point where it overlaps no other label or point and stays
    inside the axes; ``False`` (and nothing written) when some label finds no such place."""
    figure = ax.figure
    # matplotlib types a figure's canvas by the base class; _pyplot() chose the Agg backend
    renderer = cast("FigureCanvasAgg", figure.canvas).get_renderer()
    frame = ax.get_window_extent(renderer)
    from matplotlib.transforms import Bbox

    markers = [ax.transData.transform((x, y)) for _, x, y in points]  # display coordinates
    marker_boxes = [Bbox.from_bounds(px - 4, py - 4, 8, 8) for px, py in markers]
    # offsets in points: right, left, above, below, then further out
    candidates = [(6, 0, "left", "center"), (-6, 0, "right", "center"), (0, 7, "center", "bottom"),
                  (0, -7, "center", "top"), (6, 10, "left", "bottom"), (6, -10, "left", "top"),
                  (-6, 10, "right", "bottom"), (-6, -10, "right", "top")]  # fmt: skip
    placed: list[Any] = []
    texts = []
    for k, (label, x, y) in enumerate(points):
        for dx, dy, ha, va in candidates:
            text = ax.annotate(
                label, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=8
            )
            box = text.get_window_extent(renderer)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            others = [b for i, b in enumerate(marker_boxes) if i != k]
            if inside and not _overlaps(box, placed) and not _overlaps(box, others):
                placed.append(box)
                texts.append(text)
                break
            text.remove()
        else:
            for text in texts:
                text.remove()
            return False
    return True


def scatter_figure(
    points: Sequence[tuple[str, float, float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = True,
) -> Figure:
    """One point per ``(label, x, y)``, as the papers plot accuracy against cost.

    Labels go next to their points where they fit without overlapping; otherwise (or beyond
    ``MAX_POINT_LABELS`` points) the points are numbered and named in a legend.
    """
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(7, 5), layout="constrained")
    xs = [x for _, x, _ in points]
    ys = [y for _, _, y in points]
    ax.scatter(xs, ys, s=30, color="tab:blue", zorder=3)
    if log_x and all(x > 0 for x in xs):
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.25, y=0.15)
    figure.canvas.draw()  # fixes the layout, so label extents are final
    if len(points) > MAX_POINT_LABELS or not _label_points(ax, points):
        for k, (_, x, y) in enumerate(points, start=1):
            ax.annotate(
                str(k), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, zorder=4
            )
        handles = [
            plt.Line2D(
                [], [], linestyle="none", marker=f"${k}$", markersize=4 + 2.5 * len(str(k)),
                color="black",
            )
            for k in range(1, len(points) + 1)
        ]  # fmt: skip
        figure.set_figwidth(figure.get_figwidth() + 3)
        figure.legend(
            handles,
            [label for label, _, _ in points],
            loc="outside right upper",
            fontsize=7,
            frameon=False,
        )
    return figure


def learning_curves_figure(
    curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
    *,
    metrics: Sequence[str],
    title: str = "Learning curves",
) -> Figure:
    """``curves[label][metric] = [(epoch, value), ...]``: one panel per metric (in the order of
    ``metrics``, those some run logged), one line per run, named in one legend beside the panels."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    shown = [m for m in metrics if any(run.get(m) for run in curves.values())]
    figure, axes = plt.subplots(
        1,
        max(len(shown), 1),
        figsize=(4.2 * max(len(shown), 1) + 2.5, 3.8),
        squeeze=False,
        layout="constrained",
    )
    colours = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for ax, metric in zip(axes[0], shown, strict=False):
        for k, (label, run_curves) in enumerate(curves.items()):
            if run_curves.get(metric):
                epochs, values = zip(*sorted(run_curves[metric]), strict=True)
                ax.plot(epochs, values, marker=".", label=label, color=colours(k % colours.N))
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if "acc" in metric else "loss" if "loss" in metric else metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    named: dict[str, Artist] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            named.setdefault(label, handle)
    handles, labels = list(named.values()), list(named)
    if handles:
        figure.legend(
            handles,
            labels,
            loc="outside right upper",
            fontsize=7,
            frameon=False,
            ncols=math.ceil(len(handles) / 24),
        )
    figure.suptitle(title)
    return figure


def study_figures(study: Any, *, metric: str) -> dict[str, Figure]:
    """An Optuna study's standard plots (``optuna.visualization.matplotlib``) of ``metric``:
    optimisation history, parameter importances, parallel coordinates and slices, by file stem.
    A study of several objectives adds its Pareto front (``optuna_pareto``) and draws the others
    for its first objective.

    Importances need at least two finished trials and a parameter that varies; fANOVA (Optuna's
    default) needs scikit-learn, so without it PED-ANOVA, which needs nothing more, ranks them.
    """
    import warnings

    import optuna
    from matplotlib.ticker import MaxNLocator
    from optuna.visualization import matplotlib as optuna_plots

    _pyplot()  # the Agg backend, before Optuna imports pyplot
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    target: dict[str, Any] = {"target_name": metric}
    plotters: dict[str, Any] = {"optuna_history": optuna_plots.plot_optimization_history}
    if len(study.directions) > 1:
        names = list(study.metric_names or [f"objective {i}" for i in range(len(study.directions))])
        target = {"target": lambda trial: trial.values[0], "target_name": names[0]}
        plotters["optuna_pareto"] = functools.partial(
            optuna_plots.plot_pareto_front, target_names=names
        )
    if len(finished) >= 2 and {name for t in finished for name in t.params}:
        try:
            import sklearn  # noqa: F401

            evaluator, method = None, "fANOVA"
        except ImportError:
            evaluator, method = optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA"
        plotters["optuna_importances"] = functools.partial(
            optuna_plots.plot_param_importances, evaluator=evaluator
        )
        plotters["optuna_parallel"] = optuna_plots.plot_parallel_coordinate
        plotters["optuna_slice"] = optuna_plots.plot_slice
    figures: dict[str, Figure] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, plot in plotters.items():
            ax = np.asarray(plot(study) if name == "optuna_pareto" else plot(study, **target))
            ax = ax.flat[0]
            if name == "optuna_history":
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            elif name == "optuna_importances":  # Optuna's title sits on the left
                title = f"Hyperparameter importances for {target['target_name']} ({method})"
                ax.set_title(title, loc="left")
            figures[name] = ax.figure
    return figures
