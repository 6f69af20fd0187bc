"""`cnnlab predict` as functions: image files -> the run's preprocessing -> top-k classes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.files import open_regular
from cnnlab.runs.load import load_run

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def _to_uint8(array: np.ndarray, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        # NaN compares false with every bound below and would become an arbitrary pixel, and so a class
        raise CnnlabError(f"{source} holds NaN or infinite values; give uint8 pixels 0..255 or floats in [0, 1]")
    if np.issubdtype(array.dtype, np.floating) and array.size and array.min() >= 0 and array.max() <= 1:
        return np.round(array * 255).astype(np.uint8)  # floats in [0, 1]
    if array.size and (array.min() < 0 or array.max() > 255):
        raise CnnlabError(f"{source}: pixel values must be uint8 0..255 or floats in [0, 1]")
    return array.astype(np.uint8)


def fit_images(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """(N, C, H, W) uint8 -> the model's channel count and stored size (bilinear resize, grey <-> RGB)."""
    if images.shape[1] != channels:
        if channels == 1:
            images = images.float().mean(1, keepdim=True).round().to(torch.uint8)
        else:
            images = images[:, :1].expand(-1, channels, -1, -1)
    if images.shape[-2:] != (size, size):
        resized = torch.nn.functional.interpolate(
            images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        images = resized.round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


# Bounds on what predict and inspect decode: far above any picture of a digit, far below what fills memory.
MAX_PIXELS = 4096 * 4096  # per image (H * W), checked from the header before decoding
MAX_NPY_ELEMENTS = 64 * MAX_PIXELS  # a whole .npy array, checked from its header before reading
# The bytes of a whole .npy array, from its header: converting to pixels takes a few times this, so 64 float64
# images of MAX_PIXELS (8 GiB, needing some 30 GB) are refused while a batch of 10,000 CIFAR images is not.
MAX_NPY_BYTES = 256 * 2**20
MAX_IMAGE_FILE_BYTES = 256 * 2**20  # a PNG/JPEG file itself (its pixels are bounded by MAX_PIXELS)


def _open_file(path: Path, limit: int | None) -> Any:
    """`path` opened for reading through `open_regular` at the target of any link (the user named the file):
    a FIFO or a device is one line at once, not a hang or a read without end."""
    return os.fdopen(open_regular(os.path.realpath(path), limit=limit), "rb")


def _npy_header(f: Any, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of the .npy file open as `f`, or a one-line error for anything cnnlab
    will not read; `f` is left just past the header."""
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(f)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    except PermissionError:
        raise  # the environment: the CLI says so and exits 1
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        why = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CnnlabError(f"cannot read {str(path)!r} as a .npy array: {why}") from None
    if dtype.hasobject or dtype.kind not in "iuf":  # bool too: True/False read as pixels 1/0 are a black image
        raise CnnlabError(
            f"{str(path)!r} holds {dtype} values; give uint8 pixels 0..255 or floats in [0, 1] "
            "(cnnlab never loads Python objects from .npy files)"
        )
    if not 2 <= len(shape) <= 4:
        raise CnnlabError(f"{str(path)!r}: expected an array of shape (H, W), (N, H, W) or (N, C, H, W), got {shape}")
    elements = int(np.prod(shape, dtype=object))
    height, width = shape[-2:] if len(shape) != 3 or shape[-1] not in (1, 3) or shape[0] <= 4 else shape[:2]
    if height * width > MAX_PIXELS or elements > MAX_NPY_ELEMENTS:
        raise CnnlabError(
            f"{str(path)!r}: an array of shape {shape} is more than cnnlab reads "
            f"({MAX_PIXELS:,} pixels per image, {MAX_NPY_ELEMENTS:,} values in all); shrink it first"
        )
    size = elements * dtype.itemsize
    if size > MAX_NPY_BYTES:
        raise CnnlabError(
            f"{str(path)!r}: an array of shape {shape} and dtype {dtype} is {size:,} bytes, more than "
            f"cnnlab reads ({MAX_NPY_BYTES:,}); split it or store uint8 pixels"
        )
    return shape, dtype


def _read_npy(path: Path) -> np.ndarray:
    """The array in a .npy file, its size checked from the header before any of it is read."""
    with _open_file(path, None) as f:  # the header bounds what is read, whatever the file's size
        _npy_header(f, path)
        f.seek(0)
        try:
            return np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            why = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise CnnlabError(f"cannot read {str(path)!r} as a .npy array: {why}") from None


def _read_image(path: Path, mode: str) -> np.ndarray:
    """The pixels of an image file in PIL `mode`, refusing one larger than MAX_PIXELS before decoding it."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL only warns between its own limit and twice it; that is still far too big here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open_file(path, MAX_IMAGE_FILE_BYTES) as f, Image.open(f) as img:  # reads the header only
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise CnnlabError(
                        f"image {str(path)!r} is {width}x{height} pixels, more than cnnlab reads "
                        f"({MAX_PIXELS:,}); shrink it first"
                    )
                return np.asarray(img.convert(mode), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        why = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CnnlabError(f"image {str(path)!r} is too large to read safely ({why})") from None
    except (PermissionError, CnnlabError):  # an UnsafeFileError is a ValueError too: it says more than PIL's
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        # PIL reports broken files in all of these, depending on the format and where the damage is.
        raise CnnlabError(f"cannot read {str(path)!r} as an image (PNG, JPEG, ... or .npy)") from None


def load_images(
    paths: list[str | Path], channels: int, size: int, invert: bool = False
) -> tuple[torch.Tensor, list[str]]:
    """Image files (PNG/JPEG/...) or .npy arrays -> uint8 (N, channels, size, size) and a name per image.

    Sizes come from each file's header and are checked before anything is decoded.
    """
    batches, names = [], []
    for path in map(Path, paths):
        if not path.is_file():
            what = "is not a regular file" if path.exists() else "does not exist"
            raise CnnlabError(f"image {str(path)!r} {what}; give PNG/JPEG files or .npy arrays")
        if path.suffix.lower() == ".npy":
            array = _to_uint8(_read_npy(path), repr(str(path)))
            if array.ndim == 2:  # H, W
                array = array[None, None]
            elif array.ndim == 3:  # N, H, W  (or H, W, C for a small last axis)
                array = (
                    array.transpose(2, 0, 1)[None]
                    if array.shape[-1] in (1, 3) and array.shape[0] > 4
                    else array[:, None]
                )
            elif array.ndim != 4:
                raise CnnlabError(
                    f"{str(path)!r}: expected an array of shape (H, W), (N, H, W) or (N, C, H, W), got {array.shape}"
                )
            if 0 in array.shape:
                raise CnnlabError(f"{str(path)!r}: the array of shape {array.shape} holds no image")
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            names += [f"{path.name}[{i}]" for i in range(len(tensor))] if len(tensor) > 1 else [path.name]
        else:
            array = _read_image(path, "L" if channels == 1 else "RGB")
            tensor = torch.from_numpy(array.copy())
            tensor = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
            names.append(path.name)
        batches.append(fit_images(tensor, channels, size))
    images = torch.cat(batches)
    if invert:  # dark strokes on a light background -> MNIST's light-on-dark
        images = 255 - images
    return images, names


def top_k(probabilities: torch.Tensor, classes: list[str], names: list[str], k: int) -> list[dict[str, Any]]:
    k = min(k, probabilities.shape[1])
    values, indices = probabilities.topk(k, dim=1)
    return [
        {
            "image": name,
            "top": [{"class": classes[int(i)], "index": int(i), "probability": float(p)} for p, i in zip(pv, iv)],
        }
        for name, pv, iv in zip(names, values, indices)
    ]


@torch.inference_mode()
def predict_files(
    path: str | Path, images: list[str | Path], k: int = 3, invert: bool = False, which: str = "best"
) -> list[dict[str, Any]]:
    """Top-k predictions of the run's model for image files, with the run's preprocessing."""

    trained = load_run(path, which)
    pixels, names = load_images(images, trained.spec.channels, trained.spec.image_size, invert)
    probabilities = trained.model(trained.transform()(pixels)).float().softmax(1)
    return top_k(probabilities, trained.classes, names, k)
