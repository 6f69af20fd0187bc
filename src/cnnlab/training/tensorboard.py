"""`cnnlab train --tensorboard`: per-epoch scalars, confusion matrix and sample images in RUN/tensorboard.

A thin wrapper over `torch.utils.tensorboard.SummaryWriter` (tensorboard is an optional
extra). The training loop stays the one place that decides what happens each epoch:
it calls `log_epoch` with the metrics row it already has. Figures come from
`cnnlab.figures.plots`, rendered to pixels on an Agg canvas, so TensorBoard shows the
same pictures as the run folder's PNGs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.extras import require_extra
from cnnlab.figures.plots import _confusion_figure, _samples_figure
from cnnlab.figures.run import sample_predictions

# metrics.csv column -> TensorBoard tag; tags sharing a prefix are drawn in one section.
SCALARS = {
    "train_loss": "loss/train",
    "test_loss": "loss/test",
    "train_acc": "accuracy/train",
    "test_acc": "accuracy/test",
    "lr": "lr",
    "epoch_seconds": "time/epoch_seconds",
    "images_per_s": "time/images_per_s",
}
IMAGE_COLUMNS = 8  # images per row of the sample grid


def require_tensorboard():
    """torch.utils.tensorboard.SummaryWriter, or a one-line error that says how to install it.

    Cheap to call while validating options, before a run folder is created.
    """
    return require_extra("tensorboard", "--tensorboard")["torch.utils.tensorboard"].SummaryWriter


def _figure_pixels(fig) -> np.ndarray:
    """A matplotlib Figure -> uint8 (H, W, 3), drawn on its own Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class TensorBoardLogger:
    """Writes one TensorBoard event stream per run into RUN/tensorboard; global step = epoch number.

    `purge_step`: when resuming, the first epoch to be logged again; events at or after it
    (from the interrupted attempt) are dropped so the curves do not fold back.
    """

    def __init__(self, run_dir: str | Path, config: dict[str, Any] | None = None, purge_step: int | None = None):
        SummaryWriter = require_tensorboard()
        self.log_dir = Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)
        if config is not None:
            # Four leading spaces: TensorBoard renders text as markdown, this keeps the JSON a code block.
            text = "\n".join("    " + line for line in json.dumps(config, indent=2, default=str).splitlines())
            self.writer.add_text("config", text, global_step=purge_step or 0)

    def log_epoch(
        self,
        epoch: int,
        row: dict[str, Any],
        confusion: torch.Tensor | None = None,
        classes: list[str] | None = None,
        images: torch.Tensor | None = None,
        *,
        labels: torch.Tensor | None = None,
        predicted: torch.Tensor | None = None,
        probs: torch.Tensor | None = None,
    ) -> None:
        """Log one epoch: the metrics row's scalars (None/NaN skipped), the confusion matrix figure
        (with `classes`), and `images` (uint8 (N, C, H, W)) as a grid, titled "pred (true)" when
        `labels` and `predicted` are given.
        """
        for key, tag in SCALARS.items():
            value = row.get(key)
            if value is not None and math.isfinite(float(value)):
                self.writer.add_scalar(tag, float(value), epoch)
        if confusion is not None:
            names = list(classes) if classes is not None else [str(i) for i in range(len(confusion))]
            fig = _confusion_figure(confusion, names, f"Test confusion matrix, epoch {epoch}")
            self.writer.add_image("confusion_matrix", _figure_pixels(fig), epoch, dataformats="HWC")
        if images is not None and len(images):
            self.writer.add_image(
                "samples", self._image_grid(images, classes, labels, predicted, probs, epoch), epoch, dataformats="HWC"
            )
        self.writer.flush()

    def log_run_epoch(self, row: dict[str, Any], model, test_batches, final_eval, classes, channels_last: bool) -> None:
        """`log_epoch` with what the loop has at the end of an epoch: 16 test predictions, mistakes first."""

        images, truth, predicted, confidence = sample_predictions(model, test_batches, 16, channels_last)
        self.log_epoch(
            row["epoch"],
            row,
            final_eval.confusion if final_eval is not None else None,
            list(classes),
            images,
            labels=truth,
            predicted=predicted,
            probs=confidence,
        )

    @staticmethod
    def _image_grid(images, classes, labels, predicted, probs, epoch: int) -> np.ndarray:
        if labels is not None and predicted is not None and classes is not None:
            fig = _samples_figure(
                images,
                labels,
                predicted,
                list(classes),
                probs,
                IMAGE_COLUMNS,
                f"Test samples after epoch {epoch}: predicted (true)",
            )
            return _figure_pixels(fig)
        from torchvision.utils import make_grid

        grid = make_grid(images.detach().cpu().to(torch.uint8), nrow=IMAGE_COLUMNS, padding=2)
        return grid.permute(1, 2, 0).numpy()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
