"""The figures of a finished run: curves, confusion matrix, per-class accuracy, sample predictions."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.figures.plots import plot_confusion, plot_curves, plot_per_class, plot_samples

SAMPLE_COUNT = 32


@torch.inference_mode()
def sample_predictions(model, batches, count: int = SAMPLE_COUNT, channels_last: bool = False):
    """Up to `count` test images (mistakes first), with true and predicted labels and confidence."""
    was_training = model.training
    model.eval()
    take = min(len(batches.labels), max(count * 8, 256))
    chunks = []
    # In evaluation-sized batches: 256 images of 224 pixels at once took 0.6 GB in the first conv alone.
    for start in range(0, take, batches.batch_size):
        x = batches.transform(batches.images[start : min(start + batches.batch_size, take)])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        chunks.append(model(x).float().softmax(1))
    probs = torch.cat(chunks)
    model.train(was_training)
    confidence, predicted = probs.max(1)
    truth = batches.labels[:take]
    wrong = (predicted != truth).nonzero().flatten()
    right = (predicted == truth).nonzero().flatten()
    chosen = torch.cat([wrong[: count // 2], right])[:count].sort().values
    return batches.images[chosen].cpu(), truth[chosen].cpu(), predicted[chosen].cpu(), confidence[chosen].cpu()


def write_run_figures(run_dir: Path, history, final_eval, model, test_batches, classes, config) -> list[Path]:
    classes = list(classes)
    paths = [
        plot_curves(history, run_dir / "curves.png"),
        plot_confusion(final_eval.confusion, classes, run_dir / "confusion.png"),
        plot_per_class(final_eval.confusion, classes, run_dir / "per_class.png"),
    ]
    images, truth, predicted, confidence = sample_predictions(model, test_batches, channels_last=config.channels_last)
    paths.append(
        plot_samples(
            images,
            truth,
            predicted,
            classes,
            run_dir / "samples.png",
            probs=confidence,
            title="Test samples: predicted (true); mistakes in red",
        )
    )
    return paths
