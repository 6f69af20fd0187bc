"""Compact JSON for pictures: PNG data URIs for images, base64 uint8 arrays for heatmaps the page colours itself.

A 28x28 PNG is a few hundred bytes, and a layer of feature maps as bytes is a quarter of float32 and
a tenth of JSON numbers, which keeps a playground round trip small and fast.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch


def png_data_uri(pixels: np.ndarray | torch.Tensor) -> str:
    """uint8 (H, W), (C, H, W) or (H, W, 3) -> 'data:image/png;base64,...'."""
    from PIL import Image

    array = pixels.detach().cpu().numpy() if isinstance(pixels, torch.Tensor) else np.asarray(pixels)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array.astype(np.uint8))).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def unit_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] -> uint8 0..255."""
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


def quantized(values: torch.Tensor, low: float | None = None, high: float | None = None) -> dict:
    """Any float tensor -> {shape, min, max, data: base64 of uint8 (values - min) / (max - min) * 255}."""
    values = values.detach().float().cpu()
    low = float(values.min()) if low is None else low
    high = float(values.max()) if high is None else high
    span = high - low if high > low else 1.0  # a constant map still draws (all dark)
    scaled = ((values - low) / span * 255).round().clamp(0, 255).to(torch.uint8)
    return {
        "shape": list(values.shape),
        "min": low,
        "max": high,
        "data": base64.b64encode(scaled.numpy().tobytes()).decode("ascii"),
    }
