"""A trained model back from a run folder or checkpoint, with the preprocessing it was trained with."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data.catalog import get_spec
from cnnlab.data.transforms import BatchTransform
from cnnlab.models import create_model
from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.config import TrainConfig
from cnnlab.train.preprocess import build_transform, preprocessing_info


@dataclass
class TrainedModel:
    model: nn.Module  # in eval mode
    config: TrainConfig
    spec: Any  # DatasetSpec of the training dataset
    checkpoint: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.spec.classes)

    @property
    def run_dir(self) -> Path:
        return Path(self.checkpoint["run_dir"])

    @property
    def input_size(self) -> int:
        return self.config.resize or self.spec.image_size

    def transform(self) -> BatchTransform:
        """The evaluation-time preprocessing of the run (no augmentation)."""
        return build_transform(self.config, self.spec, train=False)

    def preprocessing(self) -> dict[str, Any]:
        return preprocessing_info(self.config, self.spec)


def load_trained(path: str | Path, which: str = "best", device: str | torch.device = "cpu") -> TrainedModel:
    """Model from RUN_DIR (its checkpoints/<which>.pt, falling back to the other) or a checkpoint file."""
    checkpoint = load_checkpoint(path, f"{which}.pt")
    config = TrainConfig.from_dict(checkpoint["config"])
    spec = get_spec(config.dataset)
    model = create_model(config.model, in_channels=checkpoint["in_channels"], num_classes=checkpoint["num_classes"],
                         **config.model_options)
    model.load_state_dict(checkpoint["model"])
    model.to(device).eval()
    return TrainedModel(model, config, spec, checkpoint)
