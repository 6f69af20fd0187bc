"""The figures of a finished run: curves, confusion matrix, per-class accuracy, sample predictions."""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import torch

from cnnlab.figures.plots import plot_confusion, plot_curves, plot_per_class, plot_samples

SAMPLE_COUNT = 32


@torch.inference_mode()
def sample_predictions(model, batches, count: int = SAMPLE_COUNT, channels_last: bool = False):
    """Up to `count` test images (mistakes first), with true and predicted labels and confidence."""
    was_training = model.training
    model.eval()
    take = min(len(batches.images), max(count * 8, 256))
    x = batches.transform(batches.images[:take])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    probs = model(x).float().softmax(1)
    model.train(was_training)
    confidence, predicted = probs.max(1)
    truth = batches.labels[:take]
    wrong = (predicted != truth).nonzero().flatten()
    right = (predicted == truth).nonzero().flatten()
    chosen = torch.cat([wrong[: count // 2], right])[:count].sort().values
    return batches.images[chosen].cpu(), truth[chosen].cpu(), predicted[chosen].cpu(), confidence[chosen].cpu()


def write_run_figures(run_dir: Path, history, final_eval, model, test_batches, classes, config) -> list[Path]:
    classes = list(classes)
    images, truth, predicted, confidence = sample_predictions(model, test_batches, channels_last=config.channels_last)
    images, truth, predicted, confidence = (t.numpy() for t in (images, truth, predicted, confidence))
    # The samples grid costs about as much as the other three figures together: it is drawn in a second process.
    in_child = [lambda: plot_samples(images, truth, predicted, classes, run_dir / "samples.png", probs=confidence,
                                     title="Test samples: predicted (true); mistakes in red")]
    here = [lambda: plot_curves(history, run_dir / "curves.png"),
            lambda: plot_confusion(final_eval.confusion, classes, run_dir / "confusion.png"),
            lambda: plot_per_class(final_eval.confusion, classes, run_dir / "per_class.png")]
    draw_in_two_processes(in_child, here)
    return [run_dir / name for name in ("curves.png", "confusion.png", "per_class.png", "samples.png")]


def draw_in_two_processes(in_child, here) -> None:
    """Call the functions `in_child` in a forked child while this process calls those in `here`.

    Drawing is pure-Python matplotlib work that holds the GIL, so a second core helps only from a second
    process. The child only draws (its inputs are numpy arrays, no torch work) and leaves with os._exit.
    Where fork is missing or unsafe (other Python threads running), or the child fails, this process
    draws everything itself, so an error surfaces here as it would without the child.
    """
    pid = None
    if hasattr(os, "fork") and threading.active_count() == 1:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                for draw in in_child:
                    draw()
                status = 0
            finally:
                os._exit(status)
    try:
        for draw in here:
            draw()
    finally:
        child_ok = pid is not None and os.waitpid(pid, 0)[1] == 0
    if not child_ok:
        for draw in in_child:
            draw()
