"""Image grids for inspection figures: many small tiles drawn as one mosaic image.

A layer can have hundreds of kernels or feature maps; one `imshow` of a mosaic is
fast where hundreds of subplots are not. The figure has a fixed size per grid
(`grid_figure_pixels`), so a PNG's size tells how many rows and columns it holds.
Like `cnnlab.figures.plots`, figures use matplotlib's `Figure` on an Agg canvas, never pyplot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

from cnnlab.figures import plots
from cnnlab.files import check_output

DPI = 100
PAD = 1  # pixels of background between tiles
TITLE_IN, LEFT_IN, BOTTOM_IN, RIGHT_IN, COLORBAR_IN = 0.7, 0.7, 0.5, 0.15, 1.1  # margins in inches
MIN_WIDTH_IN = 5.5  # room for the two-line title above a grid of one or two tiles
MIN_CELL_IN, MAX_CELL_IN, MAX_GRID_IN = 0.3, 0.9, 14.0  # a tile's side on the page


@dataclass(frozen=True)
class Grid:
    """A written grid figure: where it is and how many rows and columns of tiles it shows."""

    path: Path
    rows: int
    cols: int
    tiles: int
    title: str


def grid_shape(count: int, ncols: int | None = None) -> tuple[int, int]:
    """(rows, cols) for `count` tiles: `ncols` wide, or near-square with at least 8 columns."""
    if ncols is None:
        ncols = count if count <= 8 else max(8, math.ceil(math.sqrt(count)))
    ncols = max(1, min(ncols, count))
    return math.ceil(count / ncols), ncols


def normalize_tiles(tiles: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """Scale each tile (first axis) on its own: to [-1, 1] by max |value| (symmetric) or min-max to [0, 1]."""
    flat = tiles.detach().float().reshape(len(tiles), -1)
    if symmetric:
        scale = flat.abs().amax(1).clamp(min=1e-12)
        return (flat / scale[:, None]).reshape(tiles.shape)
    low = flat.amin(1, keepdim=True)
    span = (flat.amax(1, keepdim=True) - low).clamp(min=1e-12)
    return ((flat - low) / span).reshape(tiles.shape)


def tile_mosaic(tiles: np.ndarray, ncols: int, pad: int = PAD, fill: float = np.nan) -> np.ndarray:
    """(N, h, w) or (N, h, w, 3) tiles -> one (rows*(h+pad)-pad, cols*(w+pad)-pad[, 3]) image, row by row."""
    tiles = np.asarray(tiles, dtype=np.float32)
    n, h, w = tiles.shape[:3]
    rows, cols = grid_shape(n, ncols)
    shape = (rows * (h + pad) - pad, cols * (w + pad) - pad, *tiles.shape[3:])
    mosaic = np.full(shape, fill, dtype=np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        mosaic[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tile
    return mosaic


def cell_inches(rows: int, cols: int) -> float:
    return min(MAX_CELL_IN, max(MIN_CELL_IN, MAX_GRID_IN / max(rows, cols)))


def grid_figure_pixels(rows: int, cols: int, colorbar: bool) -> tuple[int, int]:
    """(width, height) in pixels of a grid figure with `rows` x `cols` square tiles."""
    cell = cell_inches(rows, cols)
    width = max(MIN_WIDTH_IN, LEFT_IN + cols * cell + RIGHT_IN + (COLORBAR_IN if colorbar else 0.0))
    height = TITLE_IN + rows * cell + BOTTOM_IN
    return round(width * DPI), round(height * DPI)


def _square(tiles: np.ndarray) -> np.ndarray:
    """Tiles of one row of units (N, 1, F) -> near-square tiles padded with NaN, so a vector is visible."""
    n, h, w = tiles.shape[:3]
    if h != 1 or w <= 4:
        return tiles
    side = math.ceil(math.sqrt(w))
    out = np.full((n, side * side), np.nan, dtype=np.float32)
    out[:, :w] = tiles.reshape(n, w)
    return out.reshape(n, side, side)


def save_grid(
    tiles: torch.Tensor,
    path: str | Path,
    title: str,
    *,
    ncols: int | None = None,
    cmap: str = "viridis",
    vmin: float = 0.0,
    vmax: float = 1.0,
    colorbar: str | None = None,
    xlabel: str = "",
    ylabel: str = "",
    matrix: bool = False,
    background: str = "white",
) -> Grid:
    """Draw already-normalized tiles (N, h, w) or RGB tiles (N, h, w, 3) as one grid figure.

    `matrix`: the tiles are a rows x cols table (e.g. filter x input channel), not a flat list.
    """
    array = tiles.detach().cpu().float().numpy() if isinstance(tiles, torch.Tensor) else np.asarray(tiles, np.float32)
    rgb = array.ndim == 4
    if not rgb:
        array = _square(array)
    rows, cols = grid_shape(len(array), ncols)
    mosaic = tile_mosaic(array, cols, fill=1.0 if rgb else np.nan)
    width, height = grid_figure_pixels(rows, cols, colorbar is not None)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    w_in, h_in = width / DPI, height / DPI
    grid_w = cols * cell_inches(rows, cols)
    ax = fig.add_axes((LEFT_IN / w_in, BOTTOM_IN / h_in, grid_w / w_in, (h_in - TITLE_IN - BOTTOM_IN) / h_in))
    colormap = colormaps[cmap].with_extremes(bad=background)  # NaN: the gaps between tiles
    image = ax.imshow(
        mosaic if rgb else np.ma.masked_invalid(mosaic),
        cmap=None if rgb else colormap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        aspect="auto",
    )
    h, w = array.shape[1:3]
    # Ticks say which tile is which: a matrix (filter x input channel) labels rows and columns;
    # a flat list of tiles labels each row with the index of its first tile.
    row_step, col_step = max(1, math.ceil(rows / 16)), max(1, math.ceil(cols / 16))
    row_ticks = range(0, rows, row_step)
    ax.set_yticks(
        [r * (h + PAD) + (h - 1) / 2 for r in row_ticks],
        [str(r if matrix else r * cols) for r in row_ticks],
        fontsize=7,
    )
    col_ticks = range(0, cols, col_step) if matrix else range(0)
    ax.set_xticks([c * (w + PAD) + (w - 1) / 2 for c in col_ticks], [str(c) for c in col_ticks], fontsize=7)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(length=0)
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / h_in, va="top")
    if colorbar is not None and not rgb:
        bar = fig.add_axes(
            ((LEFT_IN + grid_w + 0.15) / w_in, BOTTOM_IN / h_in, 0.12 / w_in, (h_in - TITLE_IN - BOTTOM_IN) / h_in)
        )
        fig.colorbar(image, cax=bar).set_label(colorbar, fontsize=8)
    # Not tight: the size stays exactly grid_figure_pixels.
    path = plots.save_figure(fig, check_output(path), dpi=DPI, tight=False)
    return Grid(path, rows, cols, len(array), title)


def save_figure(fig: Figure, path: str | Path) -> Path:
    return plots.save_figure(fig, check_output(path), dpi=DPI)
