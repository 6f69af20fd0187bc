"""Figures of a search: the objective trial by trial with the best so far, the validation curves the pruner saw,
and the parameters' importances. Plain matplotlib Figures on an Agg canvas, saved atomically (`save_figure`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cnnlab.figures.plots import save_figure

SEARCH_FIGURE = "search.png"
IMPORTANCE_FIGURE = "importances.png"
PARALLEL_FIGURE = "parallel.png"


def search_figure(rows: Sequence[dict[str, Any]]) -> Figure:
    """Left: every trial's validation accuracy in trial order and the best so far; right: the curves by epoch."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    done = [r for r in rows if r["counted"] and r["val_acc"] is not None]
    complete = [r for r in done if r["complete"]]
    pruned = [r for r in done if not r["complete"]]
    left.scatter([r["trial"] for r in complete], [r["val_acc"] for r in complete], s=22, label="complete", zorder=3)
    if pruned:
        left.scatter(
            [r["trial"] for r in pruned],
            [r["val_acc"] for r in pruned],
            s=22,
            marker="x",
            color="0.55",
            label="pruned (best epoch seen)",
            zorder=3,
        )
    best, xs, ys = None, [], []
    for r in sorted(complete, key=lambda r: r["trial"]):
        best = r["val_acc"] if best is None else max(best, r["val_acc"])
        xs.append(r["trial"])
        ys.append(best)
    if xs:
        last = max(r["trial"] for r in done)
        if last > xs[-1]:  # the best so far holds to the last trial
            xs.append(last)
            ys.append(ys[-1])
        left.step(xs, ys, where="post", color="C3", label="best so far")
    left.set(xlabel="trial", ylabel="validation accuracy", title="best value over the search")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.yaxis.set_major_formatter(PercentFormatter(1.0))
    left.grid(alpha=0.3)
    if done:
        left.legend(loc="lower right", fontsize=8)
    for r in done:
        curve = r["curve"]
        if not curve:
            continue
        epochs, values = list(curve), list(curve.values())
        style = {"color": "0.6", "linestyle": "--", "linewidth": 1} if not r["complete"] else {"linewidth": 1.2}
        right.plot(epochs, values, marker=".", **style)
    right.set(xlabel="epoch", ylabel="validation accuracy", title="validation curves (dashed: pruned)")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.yaxis.set_major_formatter(PercentFormatter(1.0))
    right.grid(alpha=0.3)
    return fig


def param_importances(study) -> dict[str, float]:
    """Optuna's parameter importances (PED-ANOVA where this Optuna has it: no scikit-learn needed); {} when
    there are too few complete trials or nothing varies."""
    import warnings

    import optuna

    evaluator = getattr(optuna.importance, "PedAnovaImportanceEvaluator", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator() if evaluator else None))
    except Exception:  # noqa: BLE001 - too few trials, a single value, an evaluator's missing dependency
        return {}


def importance_figure(importances: dict[str, float]) -> Figure:
    names = list(importances)[::-1]
    fig = Figure(figsize=(6, 0.5 * len(names) + 1.4), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set(xlabel="importance (share of the validation accuracy's variation)", title="parameter importances")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _axis_values(values: Sequence[Any]) -> tuple[list[float], list[str], list[float]]:
    """Positions in [0, 1] for one parameter's values, with tick labels: numbers on a linear or (when they span
    more than a factor of 20, all positive) a log scale, anything else as evenly spaced categories."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) == len(values) and len(set(numbers)) > 1:
        use_log = min(numbers) > 0 and max(numbers) / min(numbers) > 20
        scale = [math.log10(v) if use_log else float(v) for v in numbers]
        low, high = min(scale), max(scale)
        positions = [(s - low) / (high - low) for s in scale]
        ticks = [low + (high - low) * f for f in (0, 0.5, 1)]
        labels = [f"{10**t:.3g}" if use_log else f"{t:.3g}" for t in ticks]
        return positions, labels, [0, 0.5, 1]
    categories = sorted({str(v) for v in values})
    spread = [i / max(len(categories) - 1, 1) for i in range(len(categories))]
    where = dict(zip(categories, spread))
    return [where[str(v)] for v in values], categories, spread


def parallel_figure(rows: Sequence[dict[str, Any]], params: Sequence[str]) -> Figure:
    """Parallel coordinates: one line a trial through its parameters to its validation accuracy, coloured by it
    (Optuna's plot_parallel_coordinate, drawn with matplotlib so the report needs no plotly)."""
    done = [r for r in rows if r["counted"] and r["val_acc"] is not None and all(p in r["params"] for p in params)]
    axes = [*params, "validation accuracy"]
    columns = [_axis_values([r["params"][p] for r in done]) for p in params]
    accuracies = [r["val_acc"] for r in done]
    columns.append(_axis_values(accuracies))
    fig = Figure(figsize=(max(6, 2.2 * len(axes)), 4.2), layout="constrained")
    ax = fig.subplots()
    low, high = min(accuracies), max(accuracies)
    colours = matplotlib.colormaps["viridis"]
    for i, accuracy in enumerate(sorted(range(len(done)), key=lambda k: accuracies[k])):
        ys = [column[0][accuracy] for column in columns]
        shade = (accuracies[accuracy] - low) / (high - low) if high > low else 1.0
        ax.plot(range(len(axes)), ys, color=colours(shade), alpha=0.8, linewidth=1.4, zorder=2 + i)
    for x, (_, labels, ticks) in enumerate(columns):
        ax.axvline(x, color="0.5", linewidth=0.8, zorder=1)
        shown = labels if x < len(params) else [f"{float(t) * 100:.1f}%" for t in labels]
        for tick, label in zip(ticks, shown):
            ax.text(x + 0.03, tick, label, fontsize=8, va="center", color="0.25")
    ax.set_xticks(range(len(axes)), axes)
    ax.set_yticks([])
    ax.set_xlim(-0.1, len(axes) - 0.6)
    ax.set(title="parallel coordinates: each line a trial (colour: validation accuracy, bright is better)")
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return fig


def write_figures(folder: Path, rows: Sequence[dict[str, Any]], study, params: Sequence[str]) -> list[str]:
    """search.png, and importances.png and parallel.png when there is something to show; the names written."""
    written = []
    if any(r["val_acc"] is not None for r in rows):
        save_figure(search_figure(rows), folder / SEARCH_FIGURE)
        written.append(SEARCH_FIGURE)
    if params and sum(1 for r in rows if r["complete"]) >= 3:
        importances = param_importances(study)
        if importances:
            save_figure(importance_figure(importances), folder / IMPORTANCE_FIGURE)
            written.append(IMPORTANCE_FIGURE)
    if params and sum(1 for r in rows if r["counted"] and r["val_acc"] is not None) >= 2:
        save_figure(parallel_figure(rows, params), folder / PARALLEL_FIGURE)
        written.append(PARALLEL_FIGURE)
    return written
