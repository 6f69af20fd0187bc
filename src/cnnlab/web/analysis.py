"""A run's model over its test split: confusion matrix, per-class accuracy, samples, mistakes; and its kernels.

Computed on the first request from the best checkpoint (the embedded samples load offline) and kept
per run and checkpoint mtime, so clicking through the confusion matrix costs nothing more.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.batches import Batches
from cnnlab.errors import CnnlabError
from cnnlab.inspect.filters import filter_layers, filter_tiles
from cnnlab.inspect.inputs import load_test_split
from cnnlab.inspect.mistakes import most_confident_mistakes
from cnnlab.runs.evaluate import per_class_accuracy, predict_probabilities
from cnnlab.web.encode import png_data_uri, quantized
from cnnlab.web.models import ServedModel

SAMPLES = 16
MISTAKES = 16
CELL_IMAGES = 64  # images listed for one confusion-matrix cell
GALLERY_PER_CLASS = 3


@dataclass
class TestResults:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor
    probabilities: torch.Tensor  # (N, K)
    predicted: torch.Tensor
    confusion: torch.Tensor  # (K, K), rows true, columns predicted
    summary: dict[str, Any]  # what the run page shows


class AnalysisCache:
    def __init__(self) -> None:
        self._results: dict[tuple[Path, tuple], TestResults] = {}
        self._lock = threading.Lock()

    def get(self, run_dir: Path, served: ServedModel) -> TestResults:
        key = (run_dir, served.stamp)
        with self._lock:  # one evaluation at a time: they are CPU-bound anyway
            if key not in self._results:
                self._results = {k: v for k, v in self._results.items() if k[0] != run_dir}  # drop stale checkpoints
                self._results[key] = _evaluate(served)
            return self._results[key]


def _image(images: torch.Tensor, index: int, labels, predicted, probabilities, classes) -> dict[str, Any]:
    p = int(predicted[index])
    return {
        "index": index,
        "src": png_data_uri(images[index]),
        "true": classes[int(labels[index])],
        "predicted": classes[p],
        "probability": float(probabilities[index, p]),
    }


def _evaluate(served: ServedModel) -> TestResults:
    trained = served.trained
    # A page view never starts a download (a request would wait minutes, and a run folder from elsewhere would
    # choose what to fetch): missing data is a one-line DataError naming where it looked.
    images, labels = load_test_split(trained, download=False)
    batches = Batches(images, labels, 500, trained.transform(), shuffle=False)
    with served.lock:
        probabilities = predict_probabilities(trained.model, batches)
    predicted = probabilities.argmax(1)
    classes = trained.classes
    k = len(classes)
    confusion = torch.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
    per_class = per_class_accuracy(confusion)
    mistakes = most_confident_mistakes(probabilities, labels, MISTAKES)
    args = (images, labels, predicted, probabilities, classes)
    summary = {
        "classes": classes,
        "count": len(labels),
        "accuracy": float((predicted == labels).float().mean()) if len(labels) else None,
        "confusion": confusion.tolist(),
        "per_class_accuracy": [None if a != a else a for a in per_class],  # NaN (no samples) -> null
        "samples": [_image(*args[:1], i, *args[1:]) for i in range(min(SAMPLES, len(labels)))],
        "mistakes": [_image(*args[:1], int(i), *args[1:]) for i in mistakes],
        "checkpoint": "best.pt" if served.stamp[0] else "last.pt",
    }
    return TestResults(images, labels, probabilities, predicted, confusion, summary)


def cell_images(results: TestResults, true: int, predicted: int, classes: list[str]) -> dict[str, Any]:
    chosen = ((results.labels == true) & (results.predicted == predicted)).nonzero().flatten()
    # Most confident first: for an off-diagonal cell those are the most striking mistakes.
    order = results.probabilities[chosen, predicted].argsort(descending=True)
    chosen = chosen[order]
    shown = [
        _image(results.images, int(i), results.labels, results.predicted, results.probabilities, classes)
        for i in chosen[:CELL_IMAGES]
    ]
    return {"true": classes[true], "predicted": classes[predicted], "count": len(chosen), "images": shown}


def gallery(results: TestResults, classes: list[str]) -> list[dict[str, Any]]:
    """A few test images of every class, for the playground of runs where drawing makes no sense."""
    chosen = []
    for k in range(len(classes)):
        chosen += (results.labels == k).nonzero().flatten()[:GALLERY_PER_CLASS].tolist()
    return [
        _image(results.images, i, results.labels, results.predicted, results.probabilities, classes) for i in chosen
    ]


def filters(served: ServedModel, layer: str | None) -> dict[str, Any]:
    """Kernels of `layer` (default: the first conv layer) as tiles the page colours (weights scaled to [-1, 1])."""
    trained = served.trained
    with served.lock:  # filter_layers runs a probe through the model's hooks
        layers = filter_layers(trained.model, served.input_shape)
        if not layers:
            raise CnnlabError(f"{trained.config.model} has no conv layers or image-sized linear layer: no kernels")
        chosen = layer or next((p for p, _ in served.conv_layers), layers[0])
        tiles = filter_tiles(trained.model, chosen, served.input_shape, model_name=trained.config.model)
    rgb = tiles.tiles.ndim == 4
    return {
        "layers": layers,
        "layer": tiles.layer,
        "rows": tiles.rows,
        "cols": tiles.cols,
        "matrix": tiles.matrix,
        "rgb": rgb,
        "weight_shape": list(tiles.weight_shape),
        "shown": tiles.shown,
        "tiles": quantized(tiles.tiles, 0.0 if rgb else -1.0, 1.0),
    }
