"""What to look at: test images or image files, as the model saw them and (for permuted runs) un-permuted.

A run's preprocessing is scale, permute pixels, resize, normalize (`cnnlab.runfolder.preprocess`).
"As the model saw it" is that chain without the normalization, so pictures stay in [0, 1];
"un-permuted" is the same without the permutation. Maps computed in the model's input
space (Grad-CAM, saliency, first-layer templates) go back to the original pixel order
with `to_unpermuted`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.data.transforms import invert_permutation, permute_pixels
from cnnlab.errors import CnnlabError
from cnnlab.runfolder.own import run_data
from cnnlab.runs.predict import load_images


@dataclass
class InspectInput:
    pixels: torch.Tensor  # uint8 (N, C, H, W) at the dataset's stored size
    labels: torch.Tensor | None  # int64 (N,) for test images; None for image files
    names: list[str]  # for titles: "test #12", "seven.png"
    tags: list[str]  # for file names: "test12", "seven"


def _tag(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem).strip("_") or "image"


def load_test_split(trained, data_dir: str | None = None, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's test images (uint8) and labels; `download=False`: only from a copy already on this machine."""
    data = run_data(trained.config, data_dir, download=download)
    return data.test_images, data.test_labels


def load_inputs(
    trained,
    indices: Sequence[int] | None = None,
    images: Sequence[str | Path] | None = None,
    invert: bool = False,
    data_dir: str | None = None,
) -> InspectInput:
    """Test-split images by index, or image files preprocessed as `cnnlab predict` does."""
    if bool(indices) == bool(images):
        raise CnnlabError(
            "give either --index N (a test image of the run's dataset) or --image FILE, not both or neither"
        )
    if images:
        pixels, names = load_images(list(images), trained.spec.channels, trained.spec.image_size, invert)
        return InspectInput(pixels, None, names, [_tag(n) for n in names])
    indices = list(indices or ())  # given (and not empty) here: exactly one of indices and images is
    test_images, test_labels = load_test_split(trained, data_dir)
    for index in indices:
        if not 0 <= index < len(test_images):
            raise CnnlabError(
                f"--index {index} is out of range: the {trained.config.dataset} test split has "
                f"{len(test_images):,} images (0..{len(test_images) - 1})"
            )
    chosen = torch.tensor(indices, dtype=torch.int64)
    pixels = test_images[chosen]
    if invert:
        pixels = 255 - pixels
    return InspectInput(pixels, test_labels[chosen], [f"test #{i}" for i in indices], [f"test{i}" for i in indices])


def is_permuted(trained) -> bool:
    return bool(trained.config.permute_pixels)


def model_view(trained, pixels: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [0, 1] as the model saw them (permuted, resized; not normalized)."""
    return dataclasses.replace(trained.transform(), mean=None, std=None)(pixels)


def unpermuted_view(trained, pixels: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [0, 1] at the model's input size, in the original pixel order."""
    return dataclasses.replace(trained.transform(), mean=None, std=None, permutation=None)(pixels)


def to_unpermuted(trained, maps: torch.Tensor) -> torch.Tensor:
    """(N, C, S, S) maps over the model's input -> the same maps in the original pixel order.

    The run permuted at the stored size and then resized, so undo it in that order:
    back to the stored size, inverse permutation, back to the input size.
    """
    permutation = trained.transform().permutation
    if permutation is None:
        return maps
    stored, size = trained.spec.image_size, maps.shape[-1]
    x = maps.float()
    if size != stored:
        # Averaging when shrinking keeps the map's total; bilinear when growing.
        x = (
            F.interpolate(x, size=(stored, stored), mode="area")
            if size > stored
            else F.interpolate(x, size=(stored, stored), mode="bilinear", align_corners=False)
        )
    x = permute_pixels(x, invert_permutation(permutation))
    if size != stored:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x
