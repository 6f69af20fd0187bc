"""`cnnlab eval` as a function: a trained model on a dataset's test split."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data import load_dataset
from cnnlab.data.batches import Batches
from cnnlab.data.catalog import get_spec
from cnnlab.device import pick_device
from cnnlab.errors import CnnlabError
from cnnlab.runfolder.own import run_data
from cnnlab.runs.evaluate import EvalResult, evaluate, tta_kind
from cnnlab.runs.load import LoadedRun, load_run


@dataclass
class EvalReport:
    trained: LoadedRun
    dataset: str
    result: EvalResult
    tta: str | None = None  # the test-time augmentation used ("flip", "shift"), if any

    def to_dict(self) -> dict:
        return {
            "checkpoint": self.trained.checkpoint["path"],
            "model": self.trained.config.model,
            "dataset": self.dataset,
            "tta": self.tta,
            "count": self.result.count,
            "accuracy": self.result.accuracy,
            "loss": self.result.loss,
            "classes": self.trained.classes,
            "per_class_accuracy": [None if math.isnan(a) else a for a in self.result.per_class_accuracy],
            "confusion": self.result.confusion.tolist(),
        }


def evaluate_run(
    path: str | Path,
    dataset: str | None = None,
    data_dir: str | None = None,
    which: str = "best",
    limit: int | None = None,
    batch_size: int = 1000,
    device: str = "auto",
    tta: bool | None = None,
) -> EvalReport:
    """Evaluate the run's model on the test split of `dataset` (default: the one it was trained on).

    `tta`: test-time augmentation (`cnnlab.runs.evaluate.tta_views`); None: as the run was evaluated in training.
    """
    torch_device = pick_device(device)
    trained = load_run(path, which, torch_device)
    name = dataset or trained.config.dataset
    spec = trained.spec if name == trained.config.dataset else get_spec(name)
    if spec.channels != trained.spec.channels or len(spec.classes) != len(trained.classes):
        raise CnnlabError(
            f"{name} has {spec.channels} channel(s) and {len(spec.classes)} classes, but the model was trained on "
            f"{trained.config.dataset} ({trained.spec.channels} channel(s), {len(trained.classes)} classes)"
        )
    if name == trained.config.dataset:
        data = run_data(trained.config, data_dir)
    else:
        data = load_dataset(name, data_dir or trained.config.data_dir)
    images, labels = data.test_images[:limit], data.test_labels[:limit]
    batches = Batches(images.to(torch_device), labels.to(torch_device), batch_size, trained.transform(), shuffle=False)
    kind = tta_kind(spec) if (trained.config.tta if tta is None else tta) else None
    result = evaluate(trained.model, batches, len(trained.classes), tta=kind)
    return EvalReport(trained, name, result, kind)
