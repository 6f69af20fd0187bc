"""Figures of a search: the objective trial by trial with the best so far, the validation curves the pruner saw,
and the parameters' importances. Plain matplotlib Figures on an Agg canvas, saved atomically (`save_figure`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cnnlab.figures.plots import save_figure

SEARCH_FIGURE = "search.png"
IMPORTANCE_FIGURE = "importances.png"


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


def write_figures(folder: Path, rows: Sequence[dict[str, Any]], study, params: Sequence[str]) -> list[str]:
    """search.png, and importances.png when there is something to show; the names written."""
    written = []
    if any(r["val_acc"] is not None for r in rows):
        save_figure(search_figure(rows), folder / SEARCH_FIGURE)
        written.append(SEARCH_FIGURE)
    if params and sum(1 for r in rows if r["complete"]) >= 3:
        importances = param_importances(study)
        if importances:
            save_figure(importance_figure(importances), folder / IMPORTANCE_FIGURE)
            written.append(IMPORTANCE_FIGURE)
    return written
