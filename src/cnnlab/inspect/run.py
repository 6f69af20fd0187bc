"""Inspection of a run folder or checkpoint: load it once, write PNGs, return their paths.

These are what `cnnlab inspect` and the HTML report call. Each takes a run folder, a
checkpoint file or an already loaded `LoadedRun`, and writes into RUN_DIR/inspect/
unless given another folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError
from cnnlab.files import inside_checkpoints, make_dirs
from cnnlab.inspect.features import write_features
from cnnlab.inspect.filters import MAX_CHANNELS, MAX_FILTERS, write_filters
from cnnlab.inspect.inputs import InspectInput, load_inputs, load_test_split
from cnnlab.inspect.layers import conv_layers
from cnnlab.inspect.mistakes import write_mistakes
from cnnlab.inspect.saliency import check_method, require_captum, write_saliency
from cnnlab.runs.load import LoadedRun, load_run

REPORT_EXAMPLES = 4  # Grad-CAM examples in a run's HTML report


def open_run(run, which: str = "best", device: str | torch.device = "cpu"):
    """A LoadedRun from a run folder or checkpoint (a LoadedRun passes through)."""

    return run if isinstance(run, LoadedRun) else load_run(run, which, device)


def output_dir(trained, out: str | Path | None = None) -> Path:
    """`out`, or RUN_DIR/inspect: next to the checkpoints of the run the model came from, wherever it now is."""
    folder = Path(out) if out is not None else trained.run_dir / "inspect"
    if inside_checkpoints(folder / "x.png"):
        raise CnnlabError(
            f"-o {str(folder)!r} is inside a run's checkpoints/ folder, which only training writes; "
            "choose another folder"
        )
    if out is None:  # the run's own inspect/: a symlink there must not lead the figures out of the run
        make_dirs(folder, within=trained.run_dir)
    return folder


def inspect_filters(
    run,
    layer: str | None = None,
    out: str | Path | None = None,
    which: str = "best",
    max_filters: int | None = None,
    max_channels: int | None = None,
) -> list[Path]:
    """Kernels of a conv layer (the first by default) as a grid: filters-<layer>.png."""

    trained = open_run(run, which)
    grids = write_filters(
        trained,
        output_dir(trained, out),
        layer,
        max_filters=max_filters or MAX_FILTERS,
        max_channels=max_channels or MAX_CHANNELS,
    )
    return [g.path for g in grids]


def inspect_features(
    run,
    index: int | None = None,
    image: str | Path | None = None,
    layers: Sequence[str] | None = None,
    out: str | Path | None = None,
    which: str = "best",
    invert: bool = False,
    data_dir: str | None = None,
) -> list[Path]:
    """Feature maps of `layers` (default: the conv layers) for test image `index` or an image file."""

    trained = open_run(run, which)
    inputs = load_inputs(
        trained, None if index is None else [index], None if image is None else [image], invert, data_dir
    )
    return write_features(trained, inputs, output_dir(trained, out), layers)


def inspect_saliency(
    run,
    indices: Sequence[int] | None = None,
    images: Sequence[str | Path] | None = None,
    method: str | None = None,
    target: str | int | None = None,
    layer: str | None = None,
    out: str | Path | None = None,
    which: str = "best",
    invert: bool = False,
    data_dir: str | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Attribution maps (captum) for the predicted class and optionally `target`: saliency-<method>-<input>.png.

    `method`: gradcam | integrated-gradients | saliency | gradient-x-input; None is gradcam (integrated-gradients
    without conv layers). A degenerate map (an all-zero Grad-CAM of LeNet) falls back to gradient x input: the
    figure's title says so, and `log` hears why.
    """

    require_captum()  # before loading anything: the missing extra is the first thing to hear about
    check_method(method)
    trained = open_run(run, which)
    inputs = load_inputs(trained, indices, images, invert, data_dir)
    return write_saliency(trained, inputs, output_dir(trained, out), method, target, layer, log)


def inspect_mistakes(
    run,
    top: int = 32,
    pairs: int = 10,
    out: str | Path | None = None,
    which: str = "best",
    data_dir: str | None = None,
    limit_test: int | None = None,
    device: str = "cpu",
):
    """(Mistakes, paths): the most confident test mistakes and the most confused class pairs."""

    trained = open_run(run, which, device)
    return write_mistakes(trained, output_dir(trained, out), top, pairs, data_dir, limit_test, trained.device)


def report_figures(
    run,
    out: str | Path | None = None,
    examples: int = REPORT_EXAMPLES,
    which: str = "best",
    data_dir: str | None = None,
) -> dict[str, list[Path]]:
    """Figures for a run's HTML report: first-layer filters, and Grad-CAM for a few test images when possible.

    Grad-CAM needs captum and a conv layer; without them "gradcam" is an empty list, not an error.
    The examples are the first test images, mistakes first, so the report shows where the model looked when wrong.
    """

    trained = open_run(run, which)
    folder = output_dir(trained, out)
    figures: dict[str, list[Path]] = {"filters": [], "gradcam": []}
    try:
        figures["filters"] = [g.path for g in write_filters(trained, folder)]
    except CnnlabError:
        pass  # a model without kernels to show
    try:
        import captum.attr  # noqa: F401
    except ImportError:
        return figures
    if not conv_layers(trained.model) or examples < 1:
        return figures
    images, labels = load_test_split(trained, data_dir)
    candidates = images[: max(256, examples)]
    with torch.no_grad():
        predicted = trained.model(trained.transform()(candidates)).argmax(1)
    wrong = (predicted != labels[: len(candidates)]).nonzero().flatten()
    right = (predicted == labels[: len(candidates)]).nonzero().flatten()
    chosen = torch.cat([wrong[: examples // 2], right])[:examples].tolist()
    inputs = InspectInput(images[chosen], labels[chosen], [f"test #{i}" for i in chosen], [f"test{i}" for i in chosen])
    figures["gradcam"] = write_saliency(trained, inputs, folder, "gradcam")
    return figures
