"""Evaluation: loss, accuracy and confusion matrix over a whole split, metrics kept on the device."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.batches import Batches
from cnnlab.distributed import DistInfo, all_reduce_sum


@dataclass
class EvalResult:
    loss: float
    accuracy: float  # fraction 0..1
    confusion: torch.Tensor  # (K, K) int64 counts on the CPU, rows = true class, columns = predicted
    count: int

    @property
    def per_class_accuracy(self) -> list[float]:
        return per_class_accuracy(self.confusion)


def per_class_accuracy(confusion) -> list[float]:
    """Recall of each true class (diagonal / row sum) of a (K, K) confusion matrix; NaN for a class with no samples."""
    matrix = torch.as_tensor(confusion, dtype=torch.float64)
    return (matrix.diag() / matrix.sum(1)).tolist()


TTA_KINDS = ("flip", "shift")


def tta_views(x: torch.Tensor, kind: str) -> list[torch.Tensor]:
    """The copies of a batch that test-time augmentation averages over: the batch itself, and
    "flip": its mirror image (for classes a horizontal flip keeps: clothes, objects);
    "shift": the batch moved by one pixel up, down, left and right (digits, characters), edges repeated.
    """
    if kind == "flip":
        return [x, x.flip(3)]
    if kind != "shift":
        raise ValueError(f"unknown test-time augmentation {kind!r}; valid: {', '.join(TTA_KINDS)}")
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    h, w = x.shape[-2:]
    return [x] + [
        padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))
    ]


def tta_kind(spec) -> str:
    """The test-time augmentation that keeps a dataset's classes: flips where its spec allows them, else shifts."""
    return "flip" if spec.hflip else "shift"


def _logits(model: nn.Module, x: torch.Tensor, autocast, channels_last: bool, tta: str | None) -> torch.Tensor:
    """The model's logits for a batch (fp32), averaged over `tta_views` when `tta` names a kind."""
    views = [x] if tta is None else tta_views(x, tta)

    def logits_of(view: torch.Tensor) -> torch.Tensor:
        if channels_last:
            view = view.contiguous(memory_format=torch.channels_last)
        with autocast():
            return model(view).float()

    total = logits_of(views[0])
    for view in views[1:]:
        total = total + logits_of(view)
    return total / len(views)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Batches,
    num_classes: int,
    autocast=contextlib.nullcontext,
    channels_last: bool = False,
    dist_info: DistInfo | None = None,
    tta: str | None = None,
) -> EvalResult:
    """Evaluate `model` on every batch; puts the model back in the mode it was in.

    `tta` ("flip" or "shift") averages the logits over the views of `tta_views`.
    """
    was_training = model.training
    model.eval()
    device = batches.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for _, x, y in batches.iterate():
        logits = _logits(model, x, autocast, channels_last, tta)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        confusion += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes * num_classes)
    model.train(was_training)
    if dist_info is not None:
        all_reduce_sum(loss_sum, dist_info)
        all_reduce_sum(confusion, dist_info)
    confusion = confusion.view(num_classes, num_classes).cpu()
    count = int(confusion.sum())
    return EvalResult(
        loss=float(loss_sum) / max(count, 1),
        accuracy=float(confusion.diag().sum()) / max(count, 1),
        confusion=confusion,
        count=count,
    )


@torch.inference_mode()
def predict_probabilities(
    model: nn.Module, batches: Batches, autocast=contextlib.nullcontext, channels_last=False
) -> torch.Tensor:
    """Softmax probabilities (N, K) on the CPU, in dataset order."""
    was_training = model.training
    model.eval()
    outputs = []
    for _, x, _ in batches.iterate():
        outputs.append(_logits(model, x, autocast, channels_last, None).softmax(1).cpu())
    model.train(was_training)
    return torch.cat(outputs)
