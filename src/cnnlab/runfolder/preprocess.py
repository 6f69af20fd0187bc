"""How a run turns stored uint8 images into model inputs; shared by train, eval, predict, export, inspect."""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.data.transforms import BatchTransform, make_permutation
from cnnlab.runfolder.config import TrainConfig
from cnnlab.runfolder.values import parse_normalize


def normalization(
    config: TrainConfig, dataset_mean, dataset_std
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """(mean, std) per channel on the [0, 1] scale, or (None, None) for 'none'."""
    choice = parse_normalize(config.normalize)
    if isinstance(choice, str):  # the only strings parse_normalize gives: 'none' and 'dataset'
        if choice == "none":
            return None, None
        return tuple(dataset_mean), tuple(dataset_std)
    mean, std = choice
    channels = len(dataset_mean)
    return (mean,) * channels, (std,) * channels


def pixel_permutation(config: TrainConfig, image_size: int) -> torch.Tensor | None:
    return make_permutation(image_size * image_size, config.permutation_seed) if config.permute_pixels else None


def build_transform(config: TrainConfig, spec, *, train: bool) -> BatchTransform:
    mean, std = normalization(config, spec.mean, spec.std)
    return BatchTransform(
        mean=mean,
        std=std,
        resize=config.resize,
        permutation=pixel_permutation(config, spec.image_size),
        hflip=spec.hflip,
    )


def preprocessing_info(config: TrainConfig, spec) -> dict[str, Any]:
    """What a consumer of the trained model must do to an image (plain types, for JSON sidecars)."""
    mean, std = normalization(config, spec.mean, spec.std)
    permutation = pixel_permutation(config, spec.image_size)  # None unless config.permute_pixels
    return {
        "dataset": spec.name,
        "classes": list(spec.classes),
        "channels": spec.channels,
        "stored_size": spec.image_size,
        "input_size": config.resize or spec.image_size,
        "scale": "divide uint8 pixels by 255",
        "mean": list(mean) if mean else None,
        "std": list(std) if std else None,
        "resize": config.resize,
        "permutation_seed": config.permutation_seed if config.permute_pixels else None,
        "permutation": permutation.tolist() if permutation is not None else None,
        "order": "scale, permute pixels, resize (bilinear), normalize",
    }
