"""Feature maps: what chosen layers output for one input, one grid per layer.

All maps of a layer share one colour scale (the layer's min..max), so a channel that
barely fires looks dark instead of being stretched into noise. A layer with a flat
output (a Linear) shows its units as one square tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.inspect.grid import Grid, save_figure, save_grid
from cnnlab.inspect.inputs import is_permuted, model_view, unpermuted_view
from cnnlab.inspect.layers import capture_outputs, default_feature_layers, get_layer


@dataclass
class FeatureMaps:
    layer: str
    module_type: str  # "Conv2d", "ReLU", ...
    shape: tuple[int, ...]  # the layer's output shape for one image, e.g. (1, 8, 28, 28)
    maps: torch.Tensor  # (C, h, w) for a spatial output; (1, 1, F) for a flat one

    @property
    def channels(self) -> int:
        return self.maps.shape[0] if len(self.shape) == 4 else 1


def feature_maps(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str], model_name: str | None = None
) -> tuple[torch.Tensor, list[FeatureMaps]]:
    """(model output, the outputs of `layers`) for one preprocessed input `x` of shape (1, C, S, S)."""
    if x.dim() != 4 or len(x) != 1:
        raise CnnlabError(f"feature maps are for one image at a time: got input of shape {tuple(x.shape)}")
    modules = {name: get_layer(model, name, model_name) for name in layers}
    output, captured = capture_outputs(model, x, list(layers))
    result = []
    for name in layers:
        if name not in captured:
            raise CnnlabError(
                f"--layer {name!r} did not run (or returned no tensor) for this input; pick a layer from `cnnlab summary`"
            )
        out = captured[name].float().cpu()
        maps = out[0] if out.dim() == 4 else out.reshape(1, 1, -1)
        result.append(FeatureMaps(name, type(modules[name]).__name__, tuple(out.shape), maps))
    return output, result


def plot_feature_maps(features: FeatureMaps, path: str | Path, title: str) -> Grid:
    low, high = float(features.maps.min()), float(features.maps.max())
    if high <= low:
        high = low + 1.0  # a constant output (a dead layer) still draws
    kind = f"{features.channels} channels" if len(features.shape) == 4 else f"{features.maps.numel()} units"
    return save_grid(
        features.maps,
        path,
        f"{title}\n{features.layer} ({features.module_type}) output {features.shape}: {kind}",
        cmap="viridis",
        vmin=low,
        vmax=high,
        colorbar="activation",
    )


def plot_input(views: list[tuple[str, torch.Tensor]], path: str | Path, title: str) -> Path:
    """One panel per view of a single image: (caption, float (C, H, W) in [0, 1])."""
    fig = Figure(figsize=(2.2 * len(views), 2.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(views)))
    for ax, (caption, image) in zip(axes, views):
        picture = image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
        if picture.shape[2] == 1:
            ax.imshow(picture[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(picture, interpolation="nearest")
        ax.set_title(caption, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def input_views(trained, pixels: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The image as the model saw it and, for a permuted run, in the original pixel order too."""

    size = trained.input_size
    views = [(f"as the model saw it ({size}x{size})", model_view(trained, pixels)[0])]
    if is_permuted(trained):
        views.append(("un-permuted", unpermuted_view(trained, pixels)[0]))
    return views


def write_features(trained, inputs, out_dir: str | Path, layers: Sequence[str] | None = None) -> list[Path]:
    """features-<input>-input.png and one features-<input>-<layer>.png per layer, for the first input."""
    pixels, name, tag = inputs.pixels[:1], inputs.names[0], inputs.tags[0]
    x = trained.transform()(pixels)
    model, model_name = trained.model, trained.config.model
    layers = list(layers or default_feature_layers(model, x))
    if not layers:
        raise CnnlabError(
            f"{model_name} has no conv or linear layers to show; pass --layer NAME (see `cnnlab summary`)"
        )
    output, features = feature_maps(model, x, layers, model_name)
    probs = output.float().softmax(1)[0]
    predicted = int(probs.argmax())
    label = "" if inputs.labels is None else f", true {trained.classes[int(inputs.labels[0])]}"
    title = f"{model_name} on {name}: predicted {trained.classes[predicted]} {probs[predicted]:.0%}{label}"
    out_dir = Path(out_dir)
    paths = [plot_input(input_views(trained, pixels), out_dir / f"features-{tag}-input.png", title)]
    for feature in features:
        paths.append(plot_feature_maps(feature, out_dir / f"features-{tag}-{feature.layer}.png", title).path)
    return paths
