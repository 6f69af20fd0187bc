"""Run figures: each writes a real PNG, and the drawn data/labels are the ones given."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.figures import plots
from cnnlab.figures.plots import (
    per_class_accuracy,
    plot_confusion,
    plot_curves,
    plot_per_class,
    plot_samples,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIGITS = [str(i) for i in range(10)]


def assert_png(path, min_side: int = 150) -> np.ndarray:
    """The file is a decodable PNG of sensible size; returns its RGB pixels."""
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side and max(image.size) < 4000
        return np.asarray(image.convert("RGB"))


def red_pixels(pixels: np.ndarray) -> int:
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    return int(((r > 180) & (g < 90) & (b < 90)).sum())


def history(epochs: int, test_every: int = 1) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        evaluated = e % test_every == 0 or e == epochs
        rows.append(
            {
                "epoch": e,
                "train_loss": 1.0 / e,
                "train_acc": 0.5 + 0.05 * e,
                "test_loss": 1.2 / e if evaluated else None,
                "test_acc": 0.45 + 0.05 * e if evaluated else None,
            }
        )
    return rows


# ---- per_class_accuracy -------------------------------------------------------------------


def test_per_class_accuracy_exact_with_empty_class():
    confusion = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    acc = per_class_accuracy(confusion)
    assert acc[0] == pytest.approx(0.8) and acc[2] == pytest.approx(0.5)
    assert math.isnan(acc[1])
    tensor_acc = per_class_accuracy(torch.tensor(confusion))
    assert tensor_acc[0] == pytest.approx(0.8) and math.isnan(tensor_acc[1])


def test_confusion_shape_and_class_count_are_checked():
    with pytest.raises(CnnlabError, match=r"square"):
        per_class_accuracy(np.zeros((2, 3)))
    with pytest.raises(CnnlabError, match=r"classes has 2 names but confusion is 3x3"):
        plots._confusion(np.eye(3), ["a", "b"])


# ---- curves -------------------------------------------------------------------------------


@pytest.mark.parametrize("epochs", [1, 5])
def test_plot_curves_writes_png(tmp_path, epochs):
    path = plot_curves(history(epochs, test_every=2), tmp_path / "sub" / "curves.png")
    assert path == tmp_path / "sub" / "curves.png"
    assert_png(path)


def test_curves_single_epoch_has_integer_ticks():
    fig = plots._curves_figure(history(1))
    assert [tick for tick in fig.axes[1].get_xticks()] == [1]
    assert [tick.get_text() for tick in fig.axes[1].get_xticklabels()] == ["1"]
    many = plots._curves_figure(history(40, test_every=5)).axes[0].get_xticks()
    assert all(float(t).is_integer() for t in many) and len(many) < 15


def test_curves_plot_percent_and_skip_missing_test_epochs():
    fig = plots._curves_figure(history(5, test_every=2))  # test evaluated at epochs 2, 4, 5
    loss_ax, acc_ax = fig.axes
    lines = {line.get_label(): line for line in acc_ax.get_lines()}
    assert list(lines["train"].get_xdata()) == [1, 2, 3, 4, 5]
    assert np.allclose(lines["train"].get_ydata(), [55, 60, 65, 70, 75])
    assert list(lines["test"].get_xdata()) == [2, 4, 5]
    assert np.allclose(lines["test"].get_ydata(), [55, 65, 70])
    assert {line.get_label() for line in loss_ax.get_lines()} == {"train", "test"}
    assert lines["train"].get_marker() == "o"  # one epoch alone must still show up


def test_curves_nan_test_values_and_no_test_at_all(tmp_path):
    rows = history(3)
    rows[0]["test_acc"] = rows[0]["test_loss"] = float("nan")
    fig = plots._curves_figure(rows)
    test_line = [line for line in fig.axes[1].get_lines() if line.get_label() == "test"][0]
    assert list(test_line.get_xdata()) == [2, 3]
    untested = [{**r, "test_loss": None, "test_acc": None} for r in history(2)]
    assert [line.get_label() for line in plots._curves_figure(untested).axes[0].get_lines()] == ["train"]
    assert_png(plot_curves(untested, tmp_path / "c.png"))


def test_curves_empty_history_is_a_user_error(tmp_path):
    with pytest.raises(CnnlabError, match="history is empty"):
        plot_curves([], tmp_path / "c.png")


# ---- confusion and per-class --------------------------------------------------------------


@pytest.mark.parametrize("classes", [DIGITS, ["cat", "dog", "bird"]])
def test_plot_confusion_writes_png_with_counts(tmp_path, classes):
    k = len(classes)
    confusion = torch.eye(k, dtype=torch.int64) * 50 + torch.arange(k * k).view(k, k) % 3
    assert_png(plot_confusion(confusion, classes, tmp_path / "confusion.png"))
    fig = plots._confusion_figure(confusion, classes, "My title")
    ax = fig.axes[0]
    assert ax.get_title() == "My title"
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    assert len(fig.axes) == 2  # heatmap + colorbar
    cells = [t.get_text() for t in ax.texts]
    assert cells == [str(int(c)) for c in confusion.flatten()]


def test_confusion_skips_annotations_for_many_classes():
    k = 25
    fig = plots._confusion_figure(np.ones((k, k), dtype=int), [f"c{i}" for i in range(k)], "t")
    assert len(fig.axes[0].texts) == 0


def test_plot_per_class_bars_labels_and_overall(tmp_path):
    confusion = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    classes = ["a", "b", "c"]
    assert_png(plot_per_class(confusion, classes, tmp_path / "per_class.png"))
    ax = plots._per_class_figure(confusion, classes).axes[0]
    assert ax.get_title() == "Per-class accuracy (overall 71.43%)"  # 10 of 14
    assert [bar.get_width() for bar in ax.patches] == pytest.approx([80.0, 0.0, 50.0])
    assert [t.get_text() for t in ax.texts] == ["80.0%", "no samples", "50.0%"]
    assert [t.get_text() for t in ax.get_yticklabels()] == classes


# ---- samples ------------------------------------------------------------------------------


def test_samples_mistakes_are_red_grayscale_uint8(tmp_path):
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    truth = torch.arange(10)
    right = plot_samples(images, truth, truth.clone(), DIGITS, tmp_path / "right.png", ncols=4)
    assert red_pixels(assert_png(right)) == 0  # grayscale images, green titles: nothing red
    predicted = truth.clone()
    predicted[[1, 7]] = torch.tensor([2, 3])
    probs = torch.full((10,), 0.97)
    wrong = plot_samples(images, truth, predicted, DIGITS, tmp_path / "wrong.png", probs=probs, title="Samples")
    assert red_pixels(assert_png(wrong)) > 100  # red titles and frames

    fig = plots._samples_figure(images, truth, predicted, DIGITS, probs=probs, ncols=4)
    (ax,) = fig.axes  # one mosaic: 3 rows of 4 cells, the last two empty
    mosaic = ax.images[0].get_array()
    cell_w, cell_h = mosaic.shape[1] // 4, mosaic.shape[0] // 3
    labels = ax.texts
    assert [t.get_text() for t in labels[:2]] == ["0 97% (0)", "2 97% (1)"] and len(labels) == 10
    assert matplotlib.colors.to_hex(labels[1].get_color()) == plots.WRONG
    assert matplotlib.colors.to_hex(labels[0].get_color()) == plots.RIGHT
    # a red frame round each mistake (images 1 and 7: row 0 col 1, row 1 col 3), none elsewhere
    frames = [(int(p.get_x() + 0.5) // cell_w, int(p.get_y() + 0.5) // cell_h) for p in ax.patches]
    assert frames == [(1, 0), (3, 1)]
    assert all(matplotlib.colors.to_hex(p.get_edgecolor()) == plots.WRONG for p in ax.patches)
    # each picture is in its cell, unscaled; the empty cells stay white
    top, left = int(ax.patches[0].get_y() + 0.5), int(ax.patches[0].get_x() + 0.5)
    assert np.allclose(mosaic[top : top + 28, left : left + 28, 0], images[1, 0].numpy() / 255)
    assert (mosaic[2 * cell_h :, 2 * cell_w :] == 1).all()


def test_samples_rgb_float_images_are_scaled(tmp_path):
    images = torch.randn(5, 3, 32, 32) * 3 + 10  # normalized-looking floats far outside [0, 1]
    truth = torch.tensor([0, 1, 2, 0, 1])
    classes = ["airplane", "automobile", "bird"]
    assert_png(plot_samples(images, truth, torch.tensor([0, 2, 2, 1, 1]), classes, tmp_path / "rgb.png"))
    shown = plots._display_images(images)
    assert shown.shape == (5, 32, 32, 3)
    assert np.allclose(shown.min(axis=(1, 2, 3)), 0) and np.allclose(shown.max(axis=(1, 2, 3)), 1)
    fig = plots._samples_figure(images, truth, torch.tensor([0, 2, 2, 1, 1]), classes)
    assert fig.axes[0].texts[1].get_text() == "bird\n(automobile)"  # long names go on two lines


def test_samples_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(CnnlabError, match=r"C = 1 or 3, got shape \(2, 2, 8, 8\)"):
        plot_samples(torch.zeros(2, 2, 8, 8), [0, 1], [0, 1], ["a", "b"], tmp_path / "s.png")
    with pytest.raises(CnnlabError, match="got 2 images, 1 true, 2 predicted"):
        plot_samples(torch.zeros(2, 1, 8, 8), [0], [0, 1], ["a", "b"], tmp_path / "s.png")
