"""Run figures as PNG files: training curves, confusion matrix, per-class accuracy, sample predictions.

Figures are built with matplotlib's object-oriented `Figure` on an Agg canvas, never with pyplot,
so plotting neither switches a notebook's backend nor leaves open figures behind.
Each `plot_*` builds its figure in a `_*_figure` helper (tests inspect those) and saves it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from cnnlab.errors import CnnlabError
from cnnlab.files import make_dirs, write_bytes_atomic
from cnnlab.runs import evaluate

DPI = 110
WRONG, RIGHT = "#d62728", "#1a7f37"  # red for mistakes, dark green for correct predictions
MAX_ANNOTATED_CLASSES = 20  # above this, count labels in the confusion cells become unreadable


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI, tight: bool = True) -> Path:
    """Write `fig` as a PNG (creating folders); every cnnlab figure is saved through here.

    `tight` crops to what is drawn, at the price of drawing twice; a figure laid out by hand needs no crop.
    """
    import io

    path = Path(path)
    make_dirs(path.parent)
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly: rendering never depends on the global backend
    buffer = io.BytesIO()  # drawn in memory, then written atomically: a kill never leaves a 0-byte PNG
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _as_numpy(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _confusion(confusion: Any, classes: Sequence[str] | None = None) -> np.ndarray:
    matrix = _as_numpy(confusion)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise CnnlabError(f"confusion must be a square (K, K) matrix, got shape {tuple(matrix.shape)}")
    if classes is not None and len(classes) != matrix.shape[0]:
        raise CnnlabError(
            f"classes has {len(classes)} names but confusion is {matrix.shape[0]}x{matrix.shape[1]}; "
            "pass one name per row of the confusion matrix"
        )
    return matrix


def per_class_accuracy(confusion: Any) -> list[float]:
    """Recall of each class (diagonal / row sum) as a fraction; NaN for a class with no samples."""
    return evaluate.per_class_accuracy(_confusion(confusion))


# ---- training curves ----------------------------------------------------------------------


def _column(history: list[dict], key: str, scale: float = 1.0) -> np.ndarray:
    return np.array([math.nan if r.get(key) is None else float(r[key]) * scale for r in history])


def _curves_figure(history: list[dict]) -> Figure:
    if not history:
        raise CnnlabError("history is empty: train for at least one epoch before plotting curves")
    epochs = _column(history, "epoch")
    marker = "o" if len(history) <= 50 else None  # a single epoch is invisible as a line
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, key, scale, label in ((loss_ax, "loss", 1.0, "loss"), (acc_ax, "acc", 100.0, "accuracy (%)")):
        for split in ("train", "test"):
            values = _column(history, f"{split}_{key}", scale)
            seen = np.isfinite(values)  # test is only evaluated every few epochs: join the points we have
            if seen.any():
                ax.plot(epochs[seen], values[seen], marker=marker, markersize=4, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label.split(" ")[0].capitalize())
        ax.grid(True, alpha=0.3)
        ax.legend()
        if len(history) <= 15:  # label each epoch; also keeps one epoch from getting ticks 0.96, 0.98, ...
            ax.set_xticks(epochs.astype(int))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Loss and accuracy (%) of train and test vs epoch; test values that are None/NaN are skipped."""
    return save_figure(_curves_figure(history), path)


# ---- confusion matrix and per-class accuracy ----------------------------------------------


def _confusion_figure(confusion: Any, classes: list[str], title: str) -> Figure:
    matrix = _confusion(confusion, classes).astype(np.int64)
    k = len(classes)
    side = min(max(4.0, 0.45 * k + 2.0), 16.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="count")
    ticks = np.arange(k)
    long_names = max((len(c) for c in classes), default=0) > 3
    ax.set_xticks(ticks, classes, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if k <= MAX_ANNOTATED_CLASSES:
        threshold = matrix.max() / 2  # white text on dark cells, black on light ones
        for (row, col), count in np.ndenumerate(matrix):
            ax.text(
                col,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=7 if k > 10 else 8,
                color="white" if count > threshold else "black",
            )
    return fig


def plot_confusion(confusion: Any, classes: list[str], path: str | Path, title: str = "Test confusion matrix") -> Path:
    """Heatmap of a (K, K) count matrix (rows = true, columns = predicted), counts written in the cells."""
    return save_figure(_confusion_figure(confusion, list(classes), title), path)


def _per_class_figure(confusion: Any, classes: list[str]) -> Figure:
    matrix = _confusion(confusion, classes)
    accuracy = np.array(per_class_accuracy(matrix)) * 100
    overall = 100 * float(np.trace(matrix)) / max(float(matrix.sum()), 1.0)
    fig = Figure(figsize=(7, max(2.5, 0.32 * len(classes) + 1.2)), layout="constrained")
    ax = fig.subplots()
    rows = np.arange(len(classes))
    ax.barh(rows, np.nan_to_num(accuracy), color="#4c72b0")
    for row, value in zip(rows.tolist(), accuracy):
        ax.text(
            min(value, 100) + 1 if np.isfinite(value) else 1,
            row,
            f"{value:.1f}%" if np.isfinite(value) else "no samples",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(rows, classes)
    ax.invert_yaxis()  # class 0 on top, in reading order
    ax.set_xlim(0, 112)  # room for the value labels right of a 100% bar
    ax.set_xlabel("accuracy (%)")
    ax.set_title(f"Per-class accuracy (overall {overall:.2f}%)")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def plot_per_class(confusion: Any, classes: list[str], path: str | Path) -> Path:
    """Horizontal bars of each class's accuracy in %, in class order, overall accuracy in the title."""
    return save_figure(_per_class_figure(confusion, list(classes)), path)


# ---- sample predictions -------------------------------------------------------------------


def _display_images(images: Any) -> np.ndarray:
    """(N, C, H, W) uint8 or float -> (N, H, W, C) floats in [0, 1]."""
    array = _as_numpy(images)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise CnnlabError(f"images must be (N, C, H, W) with C = 1 or 3, got shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255
    else:
        # Normalized floats have any range: stretch each image to [0, 1] on its own.
        array = array.astype(np.float32)
        low = array.min(axis=(1, 2, 3), keepdims=True)
        span = array.max(axis=(1, 2, 3), keepdims=True) - low
        array = (array - low) / np.where(span > 0, span, 1.0)
    return array.transpose(0, 2, 3, 1)


def _samples_figure(
    images: Any,
    true_labels: Any,
    pred_labels: Any,
    classes: Sequence[str],
    probs: Any = None,
    ncols: int = 8,
    title: str | None = None,
) -> Figure:
    """One axes holding one mosaic image, a label above each tile and a red frame round each mistake.

    A grid of 32 small axes took about 0.7 s to lay out and draw, most of a short run's wind-down;
    the mosaic draws the same picture in a fraction of that (benchmarks/startup.py).
    """
    pictures = _display_images(images)
    truth = [int(t) for t in _as_numpy(true_labels).reshape(-1)]
    predicted = [int(p) for p in _as_numpy(pred_labels).reshape(-1)]
    confidence = None if probs is None else [float(p) for p in _as_numpy(probs).reshape(-1)]
    n = len(pictures)
    if n == 0 or len(truth) != n or len(predicted) != n or (confidence is not None and len(confidence) != n):
        raise CnnlabError(
            f"plot_samples needs one true label, predicted label (and prob) per image: got {n} images, "
            f"{len(truth)} true, {len(predicted)} predicted"
            + ("" if confidence is None else f", {len(confidence)} probs")
        )
    if ncols < 1:
        raise CnnlabError(f"ncols must be at least 1, got {ncols}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    two_lines = max(len(c) for c in classes) > 5  # long names ("Ankle boot") would overlap neighbours
    cell_width, cell_height, title_height = 1.35, (1.75 if two_lines else 1.55), (0.4 if title else 0.0)  # inches
    height, width = pictures.shape[1:3]
    per_inch = max(height, width) / 1.05  # each picture ~1.05 in on its longer side, pixels square
    cell_w, cell_h = round(cell_width * per_inch), round(cell_height * per_inch)
    bottom = round(0.08 * per_inch)
    mosaic = np.ones((nrows * cell_h, ncols * cell_w, 3), dtype=np.float32)  # white between pictures
    fig = Figure(figsize=(cell_width * ncols, cell_height * nrows + title_height))
    ax = fig.add_axes((0, 0, 1, 1 - title_height / (cell_height * nrows + title_height)))
    ax.set_axis_off()
    gap = "\n" if two_lines else " "
    for i, picture in enumerate(pictures):
        row, col = divmod(i, ncols)
        top = (row + 1) * cell_h - bottom - height
        left = col * cell_w + (cell_w - width) // 2
        mosaic[top : top + height, left : left + width] = picture  # a gray picture fills all three channels
        wrong = predicted[i] != truth[i]
        guess = classes[predicted[i]] + ("" if confidence is None else f" {confidence[i]:.0%}")
        ax.text(
            left + width / 2,
            top - 1.5,
            f"{guess}{gap}({classes[truth[i]]})",
            fontsize=7,
            ha="center",
            va="bottom",
            color=WRONG if wrong else RIGHT,
        )
        if wrong:  # a red frame makes mistakes findable at a glance
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False, edgecolor=WRONG, linewidth=2.5))
    ax.imshow(mosaic, interpolation="nearest", aspect="auto", vmin=0, vmax=1)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.1 / (cell_height * nrows + title_height))
    return fig


def plot_samples(
    images: Any,
    true_labels: Any,
    pred_labels: Any,
    classes: Sequence[str],
    path: str | Path,
    probs: Any = None,
    ncols: int = 8,
    title: str | None = None,
) -> Path:
    """Grid of images titled "pred (true)" (or "pred 97% (true)" with probs); mistakes in red with a red frame."""
    return save_figure(
        _samples_figure(images, true_labels, pred_labels, classes, probs, ncols, title), path, tight=False
    )
