"""The pixel-permutation experiment: does a model rely on the spatial order of pixels?

Each model is trained on images as stored ("ordered") and on images whose pixels are all reordered
by one fixed seeded permutation ("permuted": the same permutation for train and test, for every
model and seed), over several seeds. A CNN should lose clearly more than a parameter-matched MLP
(the reference: mlp-tiny 88% -> 85%, cnn-tiny 96% -> 80% on MNIST after one epoch).

Output folder: runs/<model>-<ordered|permuted>-seed<k>/ (ordinary run folders), permutation.json
(seed, permutation and its inverse), results.csv (a row per run), table.md, permutation.png,
accuracy.png and experiment.json.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.data import load_dataset
from cnnlab.data.catalog import get_spec
from cnnlab.data.transforms import invert_permutation, make_permutation, permute_pixels
from cnnlab.errors import CnnlabError
from cnnlab.experiments.compare import leaderboard
from cnnlab.experiments.plots import grouped_accuracy_figure, permutation_figure, save_figure
from cnnlab.experiments.runs import claim_experiment_folder, now_iso, write_experiment_file
from cnnlab.experiments.sweep import GridPoint, GridResult, plan_grid, run_grid
from cnnlab.files import make_dirs, timestamped_dir, write_json, write_text_atomic
from cnnlab.models import model_info
from cnnlab.models.summary import render_table
from cnnlab.runfolder.record import RunRecord

CONDITIONS = ("ordered", "permuted")
DEFAULT_MODELS = ("mlp-tiny", "cnn-tiny")
SHOWN_IMAGES = 8  # test images in permutation.png
RESULT_COLUMNS = [
    "model",
    "condition",
    "seed",
    "final_test_acc",
    "best_test_acc",
    "params",
    "epochs",
    "total_seconds",
    "images_per_s",
    "dataset",
    "recipe",
    "permutation_seed",
    "run",
    "status",
]


@dataclass
class Cell:
    """The accuracies of one model under one condition, over the seeds."""

    model: str
    condition: str
    accuracies: list[float]  # final test accuracy (fraction) of each seed

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


@dataclass
class PermutationResult:
    out_dir: Path
    cells: dict[tuple[str, str], Cell]  # (model, condition) -> accuracies over seeds
    permutation: torch.Tensor  # the pixel order every permuted run used
    permutation_seed: int
    grid: GridResult
    params: dict[str, int]  # model -> parameter count

    def drop(self, model: str) -> float:
        """Ordered minus permuted mean accuracy (fraction; positive: the permutation hurts)."""
        return self.cells[(model, "ordered")].mean - self.cells[(model, "permuted")].mean

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(model for model, _ in self.cells))

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Headers and cells: model, params, ordered and permuted mean ± std, the drop in points."""
        headers = ["model", "params", "ordered", "permuted", "drop"]
        rows = []
        for model in self.models:
            shown = [_mean_std(self.cells[(model, c)]) for c in CONDITIONS]
            rows.append([model, f"{self.params.get(model, 0):,}", *shown, f"{100 * self.drop(model):.2f} pts"])
        return headers, rows

    def markdown(self) -> str:
        headers, rows = self.table()
        lines = ["| " + " | ".join(headers) + " |", "|---|---:|---:|---:|---:|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)

    def text(self) -> str:

        return render_table(*self.table(), right={1, 2, 3, 4})


def _mean_std(cell: Cell) -> str:
    return f"{100 * cell.mean:.2f} ± {100 * cell.std:.2f}%"


def experiment_points(models: Sequence[str], seeds: int, permutation_seed: int) -> list[GridPoint]:
    """model x {ordered, permuted} x seeds 0..seeds-1, every permuted run with the same permutation seed."""
    if not models:
        raise CnnlabError("--models needs at least one model name, e.g. --models mlp-tiny cnn-tiny")
    if seeds < 1:
        raise CnnlabError(f"--seeds must be a positive integer (runs per model and condition), got {seeds}")
    return [
        GridPoint(
            f"{model}-{condition}-seed{seed}",
            {
                "model": model,
                "seed": seed,
                "permute_pixels": condition == "permuted",
                "permutation_seed": permutation_seed,
            },
        )
        for model in dict.fromkeys(models)
        for condition in CONDITIONS
        for seed in range(seeds)
    ]


def _example_images(dataset: str, data_dir: str | None) -> tuple[torch.Tensor, list[str]]:
    """A few test images (one per class where possible, so the figure shows different shapes) and their labels."""

    data = load_dataset(dataset, data_dir)
    labels = data.test_labels.tolist()
    picks = list(dict.fromkeys(labels.index(c) for c in sorted(set(labels))))[:SHOWN_IMAGES]
    return data.test_images[picks], [data.spec.classes[labels[i]] for i in picks]


def _write_permutation(
    out_dir: Path, dataset: str, permutation_seed: int, images: torch.Tensor, names: list[str]
) -> torch.Tensor:
    """permutation.json and permutation.png; returns the permutation the trainer will use."""

    spec = get_spec(dataset)
    # The same call the trainer makes (cnnlab.runfolder.preprocess.pixel_permutation), so the record is exact.
    permutation = make_permutation(spec.image_size * spec.image_size, permutation_seed)
    write_json(
        out_dir / "permutation.json",
        {
            "seed": permutation_seed,
            "dataset": dataset,
            "image_size": spec.image_size,
            "num_pixels": spec.image_size * spec.image_size,
            "made_by": "cnnlab.data.transforms.make_permutation(num_pixels, seed)",
            "meaning": "pixel i (row-major) of a permuted image is pixel permutation[i] of the stored image",
            "permutation": permutation.tolist(),
            "inverse": invert_permutation(permutation).tolist(),
        },
    )
    save_figure(
        permutation_figure(images, permute_pixels(images, permutation), names, permutation_seed),
        out_dir / "permutation.png",
    )
    return permutation


def _result_rows(points: Sequence[GridPoint], records: Sequence[RunRecord], out_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for point, record in zip(points, records):
        summary = record.summary
        rows.append(
            {
                "model": point.options["model"],
                "condition": CONDITIONS[int(point.options["permute_pixels"])],
                "seed": point.options["seed"],
                "final_test_acc": summary.get("final_test_acc"),
                "best_test_acc": summary.get("best_test_acc"),
                "params": summary.get("params"),
                "epochs": summary.get("epochs"),
                "total_seconds": summary.get("total_seconds"),
                "images_per_s": summary.get("mean_images_per_s"),
                "dataset": summary.get("dataset"),
                "recipe": summary.get("recipe"),
                "permutation_seed": point.options["permutation_seed"],
                "run": record.path.relative_to(out_dir).as_posix(),
                "status": record.status,
            }
        )
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def run_permutation(
    models: Sequence[str] = DEFAULT_MODELS,
    *,
    dataset: str = "mnist",
    data_dir: str | None = None,
    epochs: int = 1,
    seeds: int = 3,
    recipe: str = "reference",
    permutation_seed: int = 0,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    **options: Any,
) -> PermutationResult:
    """Train every model ordered and permuted over `seeds` seeds and write the experiment folder.

    `options` are further TrainConfig values shared by every run (limit_train, limit_test, progress,
    batch_size, ...). Runs already complete in `out` are skipped, so an interrupted call continues.
    """

    points = experiment_points(models, seeds, permutation_seed)
    models = list(dict.fromkeys(models))
    fixed = sorted(set(options) & {"model", "seed", "permute_pixels", "permutation_seed", "out"})
    if fixed:
        raise CnnlabError(
            f"run_permutation sets {', '.join(fixed)} itself; use models=, seeds=, permutation_seed= and out= instead"
        )
    out_dir = Path(out) if out else timestamped_dir("experiment-permutation")
    common = {"dataset": dataset, "data_dir": data_dir, "epochs": epochs, "recipe": recipe, **options}
    info: dict[str, Any] = {
        "kind": "permutation",
        "status": "running",
        "created": now_iso(),
        "title": f"Pixel-permutation experiment: {', '.join(models)} on {dataset}",
        "models": models,
        "dataset": dataset,
        "epochs": epochs,
        "seeds": seeds,
        "recipe": recipe,
        "permutation_seed": permutation_seed,
        "options": options,
        "runs": [f"runs/{p.name}" for p in points],
        "figures": ["permutation.png", "accuracy.png"],
    }
    claim_experiment_folder(out_dir, info, ("models", "dataset", "epochs", "seeds", "recipe", "permutation_seed"))
    configs = plan_grid(out_dir, points, common)
    images, names = _example_images(dataset, data_dir)  # before writing anything: fails fast without the data
    make_dirs(out_dir)
    write_experiment_file(out_dir, info)
    log(f"permutation experiment: {len(points)} runs in {out_dir} (re-run with -o {out_dir} to continue)")
    permutation = _write_permutation(out_dir, dataset, permutation_seed, images, names)

    records, actions = run_grid(points, configs, log)
    rows = _result_rows(points, records, out_dir)
    write_text_atomic(out_dir / "results.csv", _csv(rows))
    cells = {(m, c): Cell(m, c, []) for m in models for c in CONDITIONS}
    for row in rows:
        cells[(row["model"], row["condition"])].accuracies.append(float(row["final_test_acc"]))
    params = {row["model"]: row["params"] for row in rows}

    board = leaderboard([r.path for r in records])
    result = PermutationResult(
        out_dir, cells, permutation, permutation_seed, GridResult(out_dir, records, actions, board), params
    )
    references = {m: model_info(m).reference_result for m in models}
    heading = (
        f"Pixel permutation on {dataset}: final test accuracy, mean ± std over {seeds} seed(s); "
        f"recipe {recipe}, {epochs} epoch(s), permutation seed {permutation_seed}."
    )
    notes = "\n".join(f"- reference for {m}: {ref}" for m, ref in references.items() if ref)
    write_text_atomic(out_dir / "table.md", f"{heading}\n\n{result.markdown()}\n" + (f"\n{notes}\n" if notes else ""))
    save_figure(
        grouped_accuracy_figure(
            models,
            CONDITIONS,
            {k: c.mean for k, c in cells.items()},
            {k: c.std for k, c in cells.items()},
            title=f"{dataset}: ordered vs permuted pixels (mean ± std, {seeds} seed(s))",
        ),
        out_dir / "accuracy.png",
    )
    headers, table_rows = result.table()
    write_experiment_file(
        out_dir,
        {
            **info,
            "status": "complete",
            "finished": now_iso(),
            "summary_table": {"caption": heading, "headers": headers, "rows": table_rows},
            "cells": [
                {"model": c.model, "condition": c.condition, "mean": c.mean, "std": c.std, "accuracies": c.accuracies}
                for c in cells.values()
            ],
            "references": references,
        },
    )
    return result
