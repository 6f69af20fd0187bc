"""What a report shows about one run beyond its files: the test confusion matrix and the misclassified images.

Uses the run's own model and preprocessing (`load_run`) on the test split it was trained with.
Whatever cannot be computed (no checkpoint, data not found) becomes a note, never an error:
a report of ten runs should not fail because one of them crashed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.batches import Batches
from cnnlab.errors import CnnlabError
from cnnlab.figures.plots import plot_samples
from cnnlab.runfolder.config import TrainConfig
from cnnlab.runfolder.own import run_data
from cnnlab.runs.evaluate import evaluate, predict_probabilities
from cnnlab.runs.load import load_run

EVAL_BATCH = 1000


@dataclass
class RunAnalysis:
    classes: list[str] | None = None
    confusion: torch.Tensor | None = None  # (K, K) counts, rows = true class
    accuracy: float | None = None
    count: int = 0  # test images evaluated
    wrong: int = 0  # of which misclassified
    misclassified_png: bytes | None = None  # grid of misclassified test images
    checkpoint: str | None = None  # the file the model came from
    note: str = ""  # why something is missing


class DatasetCache:
    """Each dataset loaded once per report, however many runs use it."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str | None, str], Any] = {}

    def get(self, config: TrainConfig, data_dir: str | None):
        key = (config.dataset, data_dir, str(config.data_origin))
        if key not in self._loaded:
            # No download from a report: it reads what is here (the run found its data here, too).
            self._loaded[key] = run_data(config, data_dir, download=False)
        return self._loaded[key]


def png_bytes(plot, *args, **kwargs) -> bytes:
    """Run a `cnnlab.figures.plots.plot_*` function into a temporary file and return the PNG's bytes."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-report-") as folder:
        path = Path(folder) / "figure.png"
        plot(*args, path=path, **kwargs)
        return path.read_bytes()


def analyse_run(
    run_dir: str | Path, datasets: DatasetCache, data_dir: str | None = None, which: str = "last", max_images: int = 32
) -> RunAnalysis:
    """Evaluate the run's `which` checkpoint on its test split; collect up to `max_images` mistakes."""

    try:
        trained = load_run(run_dir, which)
        config = trained.config
        data = datasets.get(config, data_dir)
    except CnnlabError as err:
        return RunAnalysis(note=str(err))
    images, labels = data.test_images[: config.limit_test], data.test_labels[: config.limit_test]
    batches = Batches(images, labels, EVAL_BATCH, trained.transform(), shuffle=False)
    classes = trained.classes
    try:
        result = evaluate(trained.model, batches, len(classes))
        probabilities = predict_probabilities(trained.model, batches)
    except RuntimeError as err:  # e.g. weights that do not fit the model any more
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return RunAnalysis(classes=classes, note=f"cannot evaluate the model: {first_line}")
    confidence, predicted = probabilities.max(1)
    wrong = (predicted != labels).nonzero().flatten()
    analysis = RunAnalysis(
        classes, result.confusion, result.accuracy, result.count, len(wrong), checkpoint=trained.checkpoint["path"]
    )
    if len(wrong) and max_images > 0:
        shown = wrong[:max_images]
        analysis.misclassified_png = png_bytes(
            plot_samples,
            images[shown],
            labels[shown],
            predicted[shown],
            classes,
            probs=confidence[shown],
            title=f"{len(shown)} of {len(wrong)} misclassified test images: predicted (true)",
        )
    return analysis
