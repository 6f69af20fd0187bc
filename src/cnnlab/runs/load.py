"""A trained model back from a run folder or checkpoint, with the preprocessing it was trained with.

    >>> run = load_run("runs/convnet-mnist-sample-20261130-101500")
    >>> probabilities = run.predict(images)  # uint8 (N, C, H, W) as the dataset stores them
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data.catalog import get_spec
from cnnlab.data.preprocess import build_transform, preprocessing_info
from cnnlab.data.transforms import BatchTransform
from cnnlab.models import create_model
from cnnlab.errors import CnnlabError
from cnnlab.training.checkpoint import load_checkpoint, run_dir_of
from cnnlab.training.config import TrainConfig


@dataclass
class LoadedRun:
    model: nn.Module  # in eval mode
    config: TrainConfig
    spec: Any  # DatasetSpec of the training dataset
    checkpoint: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.spec.classes)

    @property
    def run_dir(self) -> Path:
        """The folder that holds the checkpoint, wherever it now is (never the path stored inside it)."""
        return run_dir_of(self.checkpoint["path"])

    @property
    def input_size(self) -> int:
        return self.config.resize or self.spec.image_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def transform(self) -> BatchTransform:
        """The evaluation-time preprocessing of the run (no augmentation)."""
        return build_transform(self.config, self.spec, train=False)

    def preprocessing(self) -> dict[str, Any]:
        return preprocessing_info(self.config, self.spec)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes) for uint8 images (N, C, H, W) at the dataset's stored size."""
        x = self.transform()(images.to(self.device))
        return self.model(x).float().softmax(1).cpu()


def load_run(path: str | Path, which: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    """The model of RUN_DIR (its checkpoints/<which>.pt, falling back to the other) or of a checkpoint file,
    in eval mode, with its config, dataset spec (class names) and preprocessing. `device`: a torch device or
    a name (auto: cuda, then mps, then cpu)."""
    from cnnlab.training.device import pick_device

    device = pick_device(device) if isinstance(device, str) else device
    checkpoint = load_checkpoint(path, f"{which}.pt")
    config = TrainConfig.from_dict(checkpoint["config"])
    spec = get_spec(config.dataset)
    model = create_model(config.model, in_channels=checkpoint["in_channels"], num_classes=checkpoint["num_classes"],
                         **config.model_options)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as err:  # names or shapes that are not this model's: one line, not torch's list
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(":")
        raise CnnlabError(f"{checkpoint['path']!r} is not a cnnlab checkpoint: its weights do not fit "
                          f"{config.model} ({first})") from None
    model.to(device).eval()
    return LoadedRun(model, config, spec, checkpoint)
