"""The playground's path from a drawing or an upload to what the model says and sees.

decode -> grey (or RGB) -> invert dark-on-light pictures -> centre like MNIST (digits) or fit into the
square (Fashion-MNIST, CIFAR) -> the run's own preprocessing -> model, with the conv layers' (and residual and
Inception blocks') outputs and an attribution map on the side: Grad-CAM, or gradient x input where Grad-CAM
shows nothing (LeNet) or cannot apply (a model without conv layers), with the reason. `explain_input` answers
"how did this value of this feature map come about" (`cnnlab.inspect.explain`).

MNIST centring, as LeCun et al. built the dataset: the bounding box of the ink is scaled (aspect ratio
kept) to fit 20x20, then placed in 28x28 so that its centre of mass sits at the centre. A digit drawn
small in a corner of the canvas thus reaches the model as MNIST's digits did, not as a speck.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from cnnlab.extras import has_extra
from cnnlab.inspect.explain import block_layers, explain_pixel
from cnnlab.inspect.features import FeatureMaps, feature_maps
from cnnlab.inspect.inputs import model_view
from cnnlab.inspect.saliency import LABELS, attribute_checked
from cnnlab.runs.predict import fit_images
from cnnlab.web.encode import png_data_uri, quantized, unit_to_uint8

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_SIDE = 4096
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # 16 megapixels: 64 MB as RGBA, the most one upload may decode to
# Decoded pictures are shrunk to at most about this side before anything else: every dataset's stored size
# is far smaller, so nothing the model sees is lost, and the copies made below stay small.
WORK_SIDE = 1024
UPLOAD_TYPES = ("application/octet-stream", "image/png", "image/jpeg")  # what playground.js sends, and images
INK_THRESHOLD = 24  # grey level (after inversion) above which a pixel counts as ink for the bounding box
MAX_CHANNELS_SHOWN = 64  # feature maps per layer row; wider layers are cut (the count is reported)
TOP_K = 5
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")  # what PIL may parse an upload as: no TIFF, PSD, ... parsers
NOT_AN_IMAGE = "not an image: send a PNG, JPEG, GIF, BMP or WebP file"


class InputError(ValueError):
    """A bad upload: the message is shown to the user; `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def check_size(width: int, height: int) -> None:
    """Refuse a picture from its header, before a pixel of it is decoded."""
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise InputError(
            f"image is {width}x{height} pixels; the limit is {MAX_SIDE}x{MAX_SIDE} ({MAX_PIXELS / 1e6:.1f} megapixels)"
        )


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """An image's size from its header through PIL's format plugins, without PIL's decompression-bomb check.

    Image.open refuses a header over 2 x Image.MAX_IMAGE_PIXELS outright (as if it were no image); we want to
    say how large it is. Setting MAX_IMAGE_PIXELS would change it for every thread and all of cnnlab.
    """
    from PIL import Image

    Image.init()
    for name in FORMATS:
        factory, accept = Image.OPEN[name]
        matched = accept(data[:16]) if accept is not None else True
        if matched and not isinstance(matched, str):  # a str is PIL's "looks like it, but unsupported"
            try:
                return factory(io.BytesIO(data), "").size  # reads the header only ("": no file name, as Image.open)
            except Exception:  # noqa: BLE001, S112 - a plugin's own parse error: not this format
                continue
    return None


def _open(data: bytes):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        size = _declared_size(data)
        if size is not None:
            check_size(*size)
        limit = Image.MAX_IMAGE_PIXELS  # set, or PIL would not have raised DecompressionBombError
        over = f"over {2 * limit:,} pixels" if limit is not None else "too large"
        raise InputError(f"image is {over}; the limit is {MAX_SIDE}x{MAX_SIDE}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InputError(NOT_AN_IMAGE) from None


def _shrink(img):
    """Halve (or more) a large decoded picture by whole factors, box-averaged: cheap, and no detail the model
    could see is lost. Modes `reduce` does not take (palettes, 16-bit) are converted first."""
    factor = max(img.size) // WORK_SIDE
    if factor < 2:
        return img
    if img.mode not in ("L", "LA", "RGB", "RGBA"):
        has_alpha = img.mode in ("PA", "La", "RGBa") or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
    return img.reduce(factor)


def decode_image(data: bytes, channels: int) -> np.ndarray:
    """Image bytes -> uint8 (H, W) or (H, W, 3); transparent pixels become white (a canvas' blank paper).

    The size is checked from the header before decoding; JPEGs are decoded straight at a fraction of their
    size (`draft`), other formats shrunk right after decoding, so one upload costs at most MAX_PIXELS once.
    """
    from PIL import Image

    if not data:
        raise InputError("empty upload: send a PNG or JPEG image")
    with _open(data) as img:
        check_size(*img.size)
        try:
            img.draft("L" if channels == 1 else "RGB", (WORK_SIDE, WORK_SIDE))  # JPEG only; a no-op elsewhere
            img.load()
            img = _shrink(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(paper, rgba)
            return np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise InputError(NOT_AN_IMAGE) from None


def is_light_background(image: np.ndarray) -> bool:
    """Dark strokes on light paper (a drawing, a scan), judged by the image's border."""
    grey = image if image.ndim == 2 else image.mean(2)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return float(border.mean()) > 127


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.array(
        Image.fromarray(image).resize((max(width, 1), max(height, 1)), Image.Resampling.LANCZOS)
    )  # writable, for torch


def center_like_mnist(grey: np.ndarray, size: int = 28, box: int = 20) -> np.ndarray:
    """Light-on-dark uint8 (H, W) -> (size, size): ink's bounding box fit into box x box, centre of mass centred."""
    ink = grey > INK_THRESHOLD
    if not ink.any():
        return np.zeros((size, size), np.uint8)
    rows, cols = np.nonzero(ink)
    crop = grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    fitted = _resize(crop, round(w * scale), round(h * scale)).astype(np.float64)
    out = np.zeros((size, size))
    fh, fw = fitted.shape
    mass = fitted.sum()
    cy = (fitted.sum(1) @ np.arange(fh)) / mass if mass else fh / 2
    cx = (fitted.sum(0) @ np.arange(fw)) / mass if mass else fw / 2
    # Top-left corner that puts the centre of mass at the image centre, kept inside the frame.
    top = int(np.clip(round((size - 1) / 2 - cy), 0, size - fh))
    left = int(np.clip(round((size - 1) / 2 - cx), 0, size - fw))
    out[top : top + fh, left : left + fw] = fitted
    return np.clip(out, 0, 255).round().astype(np.uint8)


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Pad to a square with the background (black after inversion), then resize: Fashion-MNIST and CIFAR style."""
    h, w = image.shape[:2]
    side = max(h, w)
    padded = np.zeros((side, side) + image.shape[2:], np.uint8)
    padded[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = image
    return _resize(padded, size, size)


def uses_mnist_centering(dataset: str, channels: int) -> bool:
    """Digits and characters were centred by centre of mass; clothes (Fashion-MNIST) and CIFAR photos were not."""
    return channels == 1 and not dataset.startswith("fashion")


def prepare_pixels(
    data: bytes, trained, center: str = "auto", invert: str = "auto"
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Upload bytes -> uint8 (1, C, S, S) at the dataset's stored size, and what was done to them.

    center/invert: "auto", "1" or "0". With both "0" the image goes through exactly what
    `cnnlab predict` does (grey or RGB, bilinear resize), so the two give the same probabilities.
    """
    spec = trained.spec
    image = decode_image(data, spec.channels)
    do_invert = is_light_background(image) if invert == "auto" else invert == "1"
    if spec.channels == 3 and invert == "auto":
        do_invert = False  # colour photos are not drawings
    if do_invert:
        image = 255 - image
    do_center = uses_mnist_centering(spec.name, spec.channels) if center == "auto" else center == "1"
    if do_center and spec.channels == 1:
        image = center_like_mnist(image, spec.image_size, round(spec.image_size * 20 / 28))
        steps = "mnist-centering"
    elif center == "0":
        tensor = torch.from_numpy(image.copy())
        tensor = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
        return fit_images(tensor, spec.channels, spec.image_size), {"inverted": do_invert, "fit": "resize"}
    else:
        image = fit_square(image, spec.image_size)
        steps = "fit-square"
    tensor = torch.from_numpy(np.ascontiguousarray(image))
    tensor = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
    return tensor, {"inverted": do_invert, "fit": steps}


def top_classes(probabilities: torch.Tensor, classes: list[str], k: int = TOP_K) -> list[dict[str, Any]]:
    values, indices = probabilities.topk(min(k, len(classes)))
    return [{"class": classes[int(i)], "index": int(i), "probability": float(p)} for p, i in zip(values, indices)]


def _map_row(feature: FeatureMaps, block: bool = False, after: str | None = None) -> dict[str, Any]:
    """A layer's maps for the page: at most MAX_CHANNELS_SHOWN channels (spread over all of them for a block,
    so every Inception branch shows), on one scale: min..max, or -m..m (diverging colours) for signed values."""
    count = feature.maps.shape[0]
    if count <= MAX_CHANNELS_SHOWN or not block:
        channels = list(range(min(count, MAX_CHANNELS_SHOWN)))
    else:
        channels = sorted({round(i * (count - 1) / (MAX_CHANNELS_SHOWN - 1)) for i in range(MAX_CHANNELS_SHOWN)})
    low, high = float(feature.maps.min()), float(feature.maps.max())  # one scale per layer
    signed = low < 0 < high
    scale = (-max(-low, high), max(-low, high)) if signed else (low, high)
    row = {
        "layer": feature.layer,
        "type": feature.module_type,
        "shape": list(feature.shape),
        "shown": len(channels),
        "channels": channels,
        "signed": signed,
        "range": [low, high],
        "maps": quantized(feature.maps[channels], *scale),
    }
    if block:
        row["after"] = after
    return row


def _blocks(model, convs: list[str]) -> list[tuple[str, str | None]]:
    """(block, the last conv layer inside it) for the residual and Inception blocks: where the page shows them."""
    found = []
    for block in block_layers(model):
        inside = [c for c in convs if c.startswith(block + ".")]
        found.append((block, inside[-1] if inside else None))
    return found


def _attribution(model, x: torch.Tensor, predicted: int, name: str, has_convs: bool) -> dict[str, Any]:
    """The attribution map the page shows, which method made it and why that one."""
    if not has_extra("inspect"):
        why = 'needs captum: pip install "cnnlab[serve]"'
        if not has_convs:
            why = f"{name} has no conv layers, so Grad-CAM does not apply; gradient × input {why}"
        return {"method": None, "label": None, "signed": False, "layer": None, "note": why, "map": None}
    method = "gradcam" if has_convs else "gradient-x-input"
    result = attribute_checked(model, x, predicted, method, model_name=name)
    cam = result.maps[0]
    if result.signed:
        peak = float(cam.abs().max()) or 1.0
        data = quantized(cam, -peak, peak)
    else:
        peak = float(cam.max())
        data = quantized(cam, 0.0, peak if peak > 0 else 1.0)
    note = result.note
    if not has_convs:
        note = (
            f"Grad-CAM weighs the maps of a conv layer, and {name} has no conv layers (only Linear ones); "
            f"shown instead: {LABELS[result.method]}, each pixel times how much it moves the class score"
        )
    elif result.method != "gradcam":
        note = f"{note}: each pixel times how much it moves the class score"
    return {
        "method": result.method,
        "label": LABELS[result.method],
        "signed": result.signed,
        "layer": result.layer,
        "note": note,
        "map": data,
    }


def analyse_input(served, pixels: torch.Tensor, with_features: bool = True, with_cam: bool = True) -> dict[str, Any]:
    """Probabilities, the input as the model sees it, conv (and block) feature maps and an attribution map for one
    uint8 (1, C, S, S) image."""
    trained = served.trained
    model, name = trained.model, trained.config.model
    convs = [path for path, _ in served.conv_layers]
    blocks = _blocks(model, convs) if with_features else []
    layers = (convs + [b for b, _ in blocks]) if with_features else []
    with served.lock:
        x = trained.transform()(pixels)
        if layers:
            output, features = feature_maps(model, x, layers, name)
        else:
            with torch.no_grad():
                output, features = model(x), []
        probabilities = output.float().softmax(1)[0]
        predicted = int(probabilities.argmax())
        attribution = _attribution(model, x, predicted, name, bool(convs)) if with_cam else None
    view = model_view(trained, pixels)[0]
    result: dict[str, Any] = {
        "probabilities": [float(p) for p in probabilities],
        "top": top_classes(probabilities, trained.classes),
        "predicted": predicted,
        "input": png_data_uri(unit_to_uint8(view)),
        "input_size": trained.input_size,
        "features": [_map_row(f) for f in features[: len(convs)]],
        "blocks": [_map_row(f, True, after) for f, (_, after) in zip(features[len(convs) :], blocks)],
        "conv_layers": bool(convs),
        "gradcam": None,
        "saliency": attribution,
        "captum": has_extra("inspect"),
    }
    if attribution is not None and attribution["method"] == "gradcam":
        result["gradcam"] = attribution["map"]
    return result


def explain_input(served, pixels: torch.Tensor, layer: str, channel: int, y: int, x: int) -> dict[str, Any]:
    """How `layer`'s output at (channel, y, x) came about for one uint8 (1, C, S, S) image (`explain_pixel`)."""
    trained = served.trained
    with served.lock:  # the model's hooks and train/eval switch are shared
        inputs = trained.transform()(pixels)
        return explain_pixel(trained.model, inputs, layer, channel, y, x, trained.config.model)
