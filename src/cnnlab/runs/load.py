"""A trained model back from a run folder or checkpoint, with the preprocessing it was trained with.

>>> run = load_run("runs/convnet-mnist-sample-20261130-101500")
>>> probabilities = run.predict(images)  # uint8 (N, C, H, W) as the dataset stores them
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.data.transforms import BatchTransform
from cnnlab.device import pick_device
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.custom import is_custom
from cnnlab.runfolder.checkpoint import load_checkpoint, run_dir_of
from cnnlab.runfolder.config import TrainConfig
from cnnlab.runfolder.own import dataset_spec, reopen_model_code
from cnnlab.runfolder.preprocess import build_transform, preprocessing_info
from cnnlab.runfolder.resolve import check_model_fits, saved_config

CHECKPOINTS = ("best", "last")  # what `which` names: checkpoints/best.pt or last.pt of a run folder


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
    def predict(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Class probabilities (N, classes) for a batch of images at the dataset's stored size (`spec.image_size`).

        `images`: a torch tensor or numpy array of shape (N, C, H, W), or (N, H, W) for a one-channel dataset,
        either uint8 pixels 0..255 as the dataset stores them, or floats in [0, 1] (what torchvision's
        ToTensor gives), which are taken as already scaled and rounded to the uint8 pixels the model was
        trained on. Other dtypes (bool, int64, ...) are a TypeError; floats outside [0, 1] or not finite, the
        wrong channel count or size, or another shape are a ValueError. Other sizes: resize them first, e.g.
        with `cnnlab.runs.predict.fit_images`.
        """
        pixels = as_pixels(images, self.spec.channels, self.spec.image_size)
        x = self.transform()(pixels.to(self.device))
        return self.model(x).float().softmax(1).cpu()


def _dtype_name(images: torch.Tensor | np.ndarray) -> str:
    return str(images.dtype).removeprefix("torch.")


def as_pixels(images: torch.Tensor | np.ndarray, channels: int, size: int) -> torch.Tensor:
    """uint8 (N, channels, size, size) from what `LoadedRun.predict` accepts, or a TypeError/ValueError saying
    what to pass: a float image in [0, 1] divided by 255 again, or a bool one read as 0/1 pixels, would give
    near-uniform probabilities without a word."""
    what = f"uint8 pixels 0..255 or floats in [0, 1], shaped (N, {channels}, {size}, {size})" + (
        f" or (N, {size}, {size})" if channels == 1 else ""
    )
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 and images.dtype.kind != "f":
            raise TypeError(f"images must be {what}; got a numpy array of {images.dtype}")
        # float16..float128 as float32 (torch has no float128); uint8 as it is
        images = torch.from_numpy(np.ascontiguousarray(images, dtype=None if images.dtype == np.uint8 else np.float32))
    elif not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor or numpy array of {what}; got {type(images).__name__}")
    if images.dtype != torch.uint8 and not images.dtype.is_floating_point:
        raise TypeError(f"images must be {what}; got {_dtype_name(images)}")
    if images.ndim == 3 and channels == 1:
        images = images[:, None]
    if images.ndim != 4 or tuple(images.shape[1:]) != (channels, size, size):
        raise ValueError(
            f"images must be shaped (N, {channels}, {size}, {size})"
            + (f" or (N, {size}, {size})" if channels == 1 else "")
            + f" for this run's dataset; got {tuple(images.shape)}"
            + ("" if images.ndim != 3 else " (one image: add the batch dimension, images[None])")
        )
    if images.dtype.is_floating_point:
        scaled = images.detach().float()
        if not bool(torch.isfinite(scaled).all()):
            raise ValueError("images hold NaN or infinite values")
        if scaled.numel() and (float(scaled.min()) < 0 or float(scaled.max()) > 1):
            raise ValueError(
                f"float images must be in [0, 1] (ToTensor's scale), got values in "
                f"[{float(scaled.min()):g}, {float(scaled.max()):g}]; for pixels 0..255 pass uint8"
            )
        images = scaled.mul(255).round_().to(torch.uint8)
    return images


_trust_code_default = [False]  # process-wide, so the web lab's worker threads see the command's --trust-code


@contextmanager
def trusting_code(trust: bool = True) -> Iterator[None]:
    """Within it, `load_run` executes a run's own model code without `trust_code=True` (the CLI's --trust-code)."""
    before, _trust_code_default[0] = _trust_code_default[0], trust
    try:
        yield
    finally:
        _trust_code_default[0] = before


def load_run(
    path: str | Path, which: str = "best", device: str | torch.device = "cpu", trust_code: bool | None = None
) -> LoadedRun:
    """The model of RUN_DIR (its checkpoints/<which>.pt, falling back to the other) or of a checkpoint file,
    in eval mode, with its config, dataset spec (class names) and preprocessing. `which`: "best" or "last".
    `device`: a torch device or a name: auto|cpu|cuda|cuda:N|mps (auto: cuda, then mps, then cpu).
    `trust_code`: a run of your own model is rebuilt by executing the copy of its source in RUN/model/
    (checked against the sha256 in its config): only with True (like Hugging Face's trust_remote_code).

    The saved config is checked as `train` checks a requested one before the model is built."""

    if which not in CHECKPOINTS:  # not silently the other one: a typo would load a model the caller did not ask for
        raise CnnlabError(f"which must be {' or '.join(map(repr, CHECKPOINTS))}, got {which!r:.60}")
    device = pick_device(device)
    checkpoint = load_checkpoint(path, f"{which}.pt")
    config = saved_config(checkpoint["config"], repr(checkpoint["path"]))
    spec = dataset_spec(config)
    if is_custom(config.model):
        trusted = _trust_code_default[0] if trust_code is None else trust_code
        reopen_model_code(config, run_dir_of(checkpoint["path"]), trusted)
        check_model_fits(config, spec)
    model = create_model(
        config.model,
        in_channels=checkpoint["in_channels"],
        num_classes=checkpoint["num_classes"],
        image_size=config.resize or spec.image_size,
        **config.model_options,
    )
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as err:  # names or shapes that are not this model's: one line, not torch's list
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(":")
        raise CnnlabError(
            f"{checkpoint['path']!r} is not a cnnlab checkpoint: its weights do not fit {config.model} ({first})"
        ) from None
    model.to(device).eval()
    return LoadedRun(model, config, spec, checkpoint)
