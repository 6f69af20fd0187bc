"""Figures of experiments: permuted images, grouped accuracy bars, and the comparison of many runs.

Like `cnnlab.figures.plots`, figures are matplotlib `Figure`s on an Agg canvas, never pyplot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from cnnlab.errors import CnnlabError
from cnnlab.figures.plots import save_figure

MAX_LABELLED_POINTS = 40  # more point labels than this only hide the points
LOG_SPAN = 3.0  # a log x axis only when the values span more than this factor


# ---- the permutation experiment -----------------------------------------------------------


def permutation_figure(images: torch.Tensor, permuted: torch.Tensor, labels: Sequence[str], seed: int) -> Figure:
    """Row 1: test images as stored; row 2: the same images with their pixels permuted."""
    n = len(images)
    if n == 0 or len(permuted) != n or len(labels) != n:
        raise CnnlabError(
            f"permutation figure needs as many permuted images and labels as images, got "
            f"{n} images, {len(permuted)} permuted, {len(labels)} labels"
        )
    fig = Figure(figsize=(1.3 * n, 3.1), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for row, (batch, name) in enumerate(((images, "ordered"), (permuted, "permuted"))):
        for col in range(n):
            ax = axes[row, col]
            picture = batch[col].float().div(255)
            if picture.shape[0] == 1:
                ax.imshow(picture[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(picture.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(str(labels[col]), fontsize=8)
        axes[row, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(f"The same test images before and after the fixed pixel permutation (seed {seed})", fontsize=10)
    return fig


def grouped_accuracy_figure(
    models: Sequence[str],
    conditions: Sequence[str],
    means: dict[tuple[str, str], float],
    stds: dict[tuple[str, str], float],
    title: str,
) -> Figure:
    """One group of bars per model, one bar per condition, mean accuracy (%) with ± std error bars."""
    fig = Figure(figsize=(max(4.5, 1.8 * len(models) + 1.5), 4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(conditions), 1)
    x = np.arange(len(models))
    for i, condition in enumerate(conditions):
        heights = [100 * means.get((m, condition), math.nan) for m in models]
        errors = [100 * stds.get((m, condition), 0.0) for m in models]
        bars = ax.bar(
            x + (i - (len(conditions) - 1) / 2) * width, heights, width, yerr=errors, capsize=4, label=condition
        )
        for bar, value, error in zip(bars, heights, errors):
            if math.isfinite(value):  # above the error bar, so the two never overlap
                ax.text(
                    bar.get_x() + bar.get_width() / 2,
                    value + error + 1,
                    f"{value:.1f}",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
    ax.set_xticks(x, models)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 112)  # room above a 100% bar for its label
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    # Below the axes: inside, it would cover some bar whatever their heights; at the top, the title.
    fig.legend(loc="outside lower center", ncols=len(conditions))
    return fig


# ---- comparing runs -----------------------------------------------------------------------


def _scatter(ax, xs: list[float], ys: list[float], labels: list[str], xlabel: str) -> None:
    ax.scatter(xs, ys, s=28, color="#4c72b0", zorder=3)
    if len(xs) <= MAX_LABELLED_POINTS:
        for x, y, label in zip(xs, ys, labels):
            ax.annotate(label, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    if min(xs) > 0 and max(xs) / min(xs) > LOG_SPAN:
        ax.set_xscale("log")
        xlabel += " (log scale)"
    else:  # close values (6,422 vs 6,442 params): log ticks would read 6.42x10^3, 6.43x10^3, ...
        ax.set_xlim(min(xs) * 0.8, max(xs) * 1.2)  # nearly equal values should look nearly equal
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.6g}"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)


def _columns(points: list[tuple[float, float, str]]) -> tuple[list[float], list[float], list[str]]:
    """(x, y, label) points -> the list of xs, of ys and of labels."""
    return [x for x, _, _ in points], [y for _, y, _ in points], [label for _, _, label in points]


def compare_figure(runs: Sequence[dict[str, Any]]) -> Figure:
    """Accuracy vs training time (log x), accuracy vs parameters (log x), and every run's test-accuracy curve.

    Each item of `runs`: label, final_test_acc (fraction), total_seconds, params, history (metric rows).
    """
    points = [r for r in runs if r.get("final_test_acc") is not None]
    if not points:
        raise CnnlabError("no complete run with a test accuracy to plot; train one or pass complete run folders")
    fig = Figure(figsize=(16, 4.8), layout="constrained")
    time_ax, params_ax, curve_ax = fig.subplots(1, 3)
    labels = [str(r["label"]) for r in points]
    accuracy = [100 * float(r["final_test_acc"]) for r in points]
    timed = [
        (max(float(r["total_seconds"]), 1e-3), a, n)
        for r, a, n in zip(points, accuracy, labels)
        if r.get("total_seconds") is not None
    ]
    sized = [(float(r["params"]), a, n) for r, a, n in zip(points, accuracy, labels) if r.get("params")]
    if timed:
        _scatter(time_ax, *_columns(timed), xlabel="training time, s")
    time_ax.set_title("Accuracy vs training time")
    if sized:
        _scatter(params_ax, *_columns(sized), xlabel="parameters")
    params_ax.set_title("Accuracy vs parameters")
    epochs: set[int] = set()
    for run in runs:
        rows = [r for r in run.get("history") or [] if r.get("test_acc") is not None]
        epochs.update(int(r["epoch"]) for r in rows)
        if rows:
            curve_ax.plot(
                [r["epoch"] for r in rows],
                [100 * r["test_acc"] for r in rows],
                marker="o",
                markersize=3,
                label=str(run["label"]),
            )
    curve_ax.set_xlabel("epoch")
    if 0 < len(epochs) <= 15:  # label each epoch (a single epoch would otherwise get ticks 0.96, 0.98, ...)
        curve_ax.set_xticks(sorted(epochs))
    else:
        curve_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    curve_ax.set_ylabel("test accuracy (%)")
    curve_ax.set_title("Test accuracy per epoch")
    curve_ax.grid(True, alpha=0.3)
    if 0 < len(runs) <= 12:  # a legend of dozens of runs covers the curves
        curve_ax.legend(fontsize=7)
    return fig


def plot_compare(runs: Sequence[dict[str, Any]], path: str | Path) -> Path:
    return save_figure(compare_figure(runs), path)
