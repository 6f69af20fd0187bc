"""Learned kernels of a layer as an image grid.

First conv layer: one tile per kernel (RGB for colour inputs). Deeper conv layers: a
table of filter x input channel, since their kernels have one slice per input
channel. An MLP has no kernels, but the rows of its first linear layer are templates
the size of the image, so those are shown instead (un-permuted too for a permuted run:
that is where the digit shapes reappear). Each filter is scaled on its own
(by its largest |weight|; zero is white), so weak and strong filters are equally legible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.inspect.grid import Grid, grid_shape, normalize_tiles, save_grid
from cnnlab.inspect.inputs import is_permuted, to_unpermuted
from cnnlab.inspect.layers import conv_layers, execution_order, get_layer

MAX_FILTERS = 64  # rows of a deeper layer's table (output filters)
MAX_CHANNELS = 32  # columns of a deeper layer's table (input channels)


@dataclass
class FilterTiles:
    layer: str
    tiles: torch.Tensor  # (N, h, w) in [-1, 1] per filter, or RGB (N, h, w, 3) in [0, 1]
    rows: int
    cols: int
    matrix: bool  # tiles form a filter x input-channel table
    weight_shape: tuple[int, ...]
    shown: str  # e.g. "16 of 16 filters x 8 of 8 input channels"


def image_linear_layer(model: nn.Module, input_shape: tuple[int, int, int]) -> str | None:
    """The first layer to run when it is a Linear over the whole image (an MLP's templates), else None."""
    probe = torch.zeros(1, *input_shape, device=_device(model))
    order = execution_order(model, probe, (nn.Conv2d, nn.Linear))
    if not order:
        return None
    first = get_layer(model, order[0])
    channels, height, width = input_shape
    return order[0] if isinstance(first, nn.Linear) and first.in_features == channels * height * width else None


def filter_layers(model: nn.Module, input_shape: tuple[int, int, int]) -> list[str]:
    """Layers with kernels to show: every Conv2d, or an MLP's first Linear."""
    convs = conv_layers(model)
    if convs:
        return convs
    linear = image_linear_layer(model, input_shape)
    return [linear] if linear else []


def default_filter_layer(model: nn.Module, input_shape: tuple[int, int, int]) -> str:
    """The first conv layer to run (or an MLP's first Linear)."""
    probe = torch.zeros(1, *input_shape, device=_device(model))
    order = execution_order(model, probe)
    if order:
        return order[0]
    linear = image_linear_layer(model, input_shape)
    if linear is None:
        raise CnnlabError(
            f"{type(model).__name__} has neither conv layers nor a linear layer over the image: no filters to show"
        )
    return linear


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def filter_tiles(
    model: nn.Module,
    layer: str,
    input_shape: tuple[int, int, int],
    *,
    model_name: str | None = None,
    max_filters: int = MAX_FILTERS,
    max_channels: int = MAX_CHANNELS,
) -> FilterTiles:
    """The tiles to draw for `layer`; raises a one-line error for a layer without kernels."""
    module = get_layer(model, layer, model_name)
    valid = filter_layers(model, input_shape)
    if layer not in valid or not isinstance(module, (nn.Conv2d, nn.Linear)):  # every valid layer is one of these
        label = model_name or type(model).__name__
        raise CnnlabError(
            f"--layer {layer!r} is a {type(module).__name__}, which has no kernels to show; "
            f"layers with filters in {label}: {', '.join(valid) or 'none'}"
        )
    weight = module.weight.detach().float().cpu()
    if isinstance(module, nn.Linear):  # rows of the first linear layer are image-shaped templates
        weight = weight.reshape(weight.shape[0], *input_shape)
    out_channels, in_channels = weight.shape[:2]
    if in_channels == 1 or (in_channels == 3 and _sees_image(model, layer, input_shape)):
        rows, cols = grid_shape(out_channels)
        shown = f"{out_channels} filters" + (" (RGB)" if in_channels == 3 else "")
        return FilterTiles(layer, image_tiles(weight), rows, cols, False, tuple(module.weight.shape), shown)
    rows, cols = min(out_channels, max_filters), min(in_channels, max_channels)
    scaled = normalize_tiles(weight, symmetric=True)  # per filter, over all its input channels
    tiles = scaled[:rows, :cols].reshape(rows * cols, *weight.shape[2:])
    shown = f"{rows} of {out_channels} filters x {cols} of {in_channels} input channels"
    return FilterTiles(layer, tiles, rows, cols, True, tuple(module.weight.shape), shown)


def image_tiles(weight: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) -> (N, h, w) scaled to [-1, 1] per filter; (N, 3, h, w) -> RGB (N, h, w, 3) min-max per filter."""
    if weight.shape[1] == 1:
        return normalize_tiles(weight[:, 0], symmetric=True)
    return normalize_tiles(weight, symmetric=False).permute(0, 2, 3, 1)


def _sees_image(model: nn.Module, layer: str, input_shape: tuple[int, int, int]) -> bool:
    probe = torch.zeros(1, *input_shape, device=_device(model))
    order = execution_order(model, probe, (nn.Conv2d, nn.Linear))
    return bool(order) and order[0] == layer


def plot_filter_tiles(filters: FilterTiles, path: str | Path, title: str) -> Grid:
    rgb = filters.tiles.ndim == 4
    return save_grid(
        filters.tiles,
        path,
        f"{title}\n{filters.layer} weight {filters.weight_shape}: {filters.shown}",
        ncols=filters.cols,
        cmap="RdBu_r",
        vmin=-1.0,
        vmax=1.0,
        colorbar=None if rgb else "weight / max |weight|",
        xlabel="input channel" if filters.matrix else "",
        ylabel="filter" if filters.matrix else "",
        matrix=filters.matrix,
        background="#555555",
    )


def write_filters(
    trained,
    out_dir: str | Path,
    layer: str | None = None,
    *,
    max_filters: int = MAX_FILTERS,
    max_channels: int = MAX_CHANNELS,
) -> list[Grid]:
    """filters-<layer>.png for a trained run (and filters-<layer>-unpermuted.png for a permuted MLP)."""

    model, name = trained.model, trained.config.model
    input_shape = (trained.spec.channels, trained.input_size, trained.input_size)
    layer = layer or default_filter_layer(model, input_shape)
    filters = filter_tiles(
        model, layer, input_shape, model_name=name, max_filters=max_filters, max_channels=max_channels
    )
    title = f"{name} filters" + (" (over permuted pixels, as the model saw them)" if is_permuted(trained) else "")
    grids = [plot_filter_tiles(filters, Path(out_dir) / f"filters-{layer}.png", title)]
    linear = get_layer(model, layer) if is_permuted(trained) else None
    if isinstance(linear, nn.Linear):
        # A template over permuted pixels is noise to the eye; put its pixels back in image order.
        weight = linear.weight.detach().float().cpu().reshape(-1, *input_shape)
        unpermuted = FilterTiles(
            layer,
            image_tiles(to_unpermuted(trained, weight)),
            filters.rows,
            filters.cols,
            False,
            filters.weight_shape,
            filters.shown + ", un-permuted",
        )
        grids.append(
            plot_filter_tiles(
                unpermuted,
                Path(out_dir) / f"filters-{layer}-unpermuted.png",
                f"{name} filters in the original pixel order",
            )
        )
    return grids
