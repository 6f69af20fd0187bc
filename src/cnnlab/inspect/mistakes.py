"""The test images a model got most confidently wrong, and the class pairs it confuses most."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from cnnlab.data.batches import Batches
from cnnlab.errors import CnnlabError
from cnnlab.figures.plots import plot_samples
from cnnlab.inspect.grid import save_figure
from cnnlab.inspect.inputs import is_permuted, load_test_split, model_view, unpermuted_view
from cnnlab.runs.evaluate import predict_probabilities

TOP = 32  # images in the mistakes grid
PAIRS = 10  # bars in the confused-pairs chart
NCOLS = 8


@dataclass
class Mistakes:
    indices: torch.Tensor  # test-split indices of the shown mistakes, most confident first
    true: torch.Tensor
    predicted: torch.Tensor
    confidence: torch.Tensor  # probability of the (wrong) predicted class
    confusion: torch.Tensor  # (K, K): rows true, columns predicted
    pairs: list[tuple[int, int, int]]  # (true, predicted, count), most frequent first
    count: int  # test images evaluated
    wrong: int  # of which misclassified
    classes: list[str]

    @property
    def accuracy(self) -> float:
        return 1 - self.wrong / max(self.count, 1)


def confused_pairs(confusion: torch.Tensor, top: int = PAIRS) -> list[tuple[int, int, int]]:
    """Off-diagonal cells of a confusion matrix, largest first: (true, predicted, count); zeros left out."""
    matrix = torch.as_tensor(confusion).clone().long()
    matrix.fill_diagonal_(0)
    counts, flat = matrix.flatten().sort(descending=True, stable=True)
    k = matrix.shape[1]
    return [(int(i) // k, int(i) % k, int(c)) for c, i in zip(counts[:top], flat[:top]) if c > 0]


def most_confident_mistakes(probabilities: torch.Tensor, labels: torch.Tensor, top: int = TOP) -> torch.Tensor:
    """Indices of misclassified rows, by the predicted class's probability, highest first."""
    confidence, predicted = probabilities.max(1)
    wrong = (predicted != labels).nonzero().flatten()
    order = confidence[wrong].argsort(descending=True, stable=True)
    return wrong[order[:top]]


def find_mistakes(
    trained,
    top: int = TOP,
    pairs: int = PAIRS,
    data_dir: str | None = None,
    limit_test: int | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 500,
) -> tuple[Mistakes, torch.Tensor]:
    """Evaluate the run's model on its test split; returns the mistakes and the test images (uint8)."""

    if top < 1:
        raise CnnlabError(f"--top must be a positive integer, got {top}")
    images, labels = load_test_split(trained, data_dir)
    images, labels = images[:limit_test], labels[:limit_test]
    model = trained.model.to(device)
    batches = Batches(images.to(device), labels.to(device), batch_size, trained.transform(), shuffle=False)
    probabilities = predict_probabilities(model, batches)
    predicted = probabilities.argmax(1)
    k = len(trained.classes)
    confusion = torch.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
    chosen = most_confident_mistakes(probabilities, labels, top)
    mistakes = Mistakes(
        chosen,
        labels[chosen],
        predicted[chosen],
        probabilities[chosen, predicted[chosen]],
        confusion,
        confused_pairs(confusion, pairs),
        len(labels),
        int((predicted != labels).sum()),
        trained.classes,
    )
    return mistakes, images


def pairs_figure(mistakes: Mistakes, classes: list[str], title: str) -> Figure:
    """Horizontal bars: how often class A was taken for class B, most frequent on top."""
    labels = [f"{classes[t]} -> {classes[p]}" for t, p, _ in mistakes.pairs]
    counts = np.array([c for _, _, c in mistakes.pairs])
    row_totals = mistakes.confusion.sum(1)
    fig = Figure(figsize=(7, max(2.0, 0.35 * len(labels) + 1.2)), layout="constrained")
    ax = fig.subplots()
    rows = np.arange(len(labels))
    ax.barh(rows, counts, color="#d62728")
    for row, (t, _, count) in zip(rows.tolist(), mistakes.pairs):
        share = count / max(int(row_totals[t]), 1)
        ax.text(count, row, f" {count} ({share:.1%} of {classes[t]})", va="center", fontsize=8)
    ax.set_yticks(rows, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, counts.max() * 1.35)
    ax.set_xlabel("test images (true -> predicted)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def _uint8(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def write_mistakes(
    trained,
    out_dir: str | Path,
    top: int = TOP,
    pairs: int = PAIRS,
    data_dir: str | None = None,
    limit_test: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Mistakes, list[Path]]:
    """mistakes.png (+ mistakes-unpermuted.png for a permuted run) and confused-pairs.png; none when there are no mistakes."""

    mistakes, images = find_mistakes(trained, top, pairs, data_dir, limit_test, device)
    out_dir, classes, name = Path(out_dir), trained.classes, trained.config.model
    paths: list[Path] = []
    if not len(mistakes.indices):
        return mistakes, paths
    shown = images[mistakes.indices]
    summary = f"{name}: {mistakes.wrong:,} of {mistakes.count:,} test images wrong ({mistakes.accuracy:.2%} accuracy)"
    title = f"{summary}; the {len(shown)} most confident mistakes: predicted (true)"
    args = (mistakes.true, mistakes.predicted, classes)
    paths.append(
        plot_samples(
            _uint8(model_view(trained, shown)),
            *args,
            out_dir / "mistakes.png",
            probs=mistakes.confidence,
            ncols=NCOLS,
            title=title + " as the model saw them",
        )
    )
    if is_permuted(trained):
        paths.append(
            plot_samples(
                _uint8(unpermuted_view(trained, shown)),
                *args,
                out_dir / "mistakes-unpermuted.png",
                probs=mistakes.confidence,
                ncols=NCOLS,
                title=title + ", un-permuted",
            )
        )
    if mistakes.pairs:
        paths.append(
            save_figure(
                pairs_figure(mistakes, classes, f"Most confused class pairs\n{summary}"), out_dir / "confused-pairs.png"
            )
        )
    return mistakes, paths
