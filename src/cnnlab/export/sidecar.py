"""What a consumer of an exported model needs, as JSON: beside the file (`<file>.json`) and inside it.

The same dict is embedded in the model file (ONNX `metadata_props["cnnlab"]`,
TorchScript extra file `cnnlab.json`), so a file that travels alone still
carries its classes and preprocessing; the sidecar adds the verification result.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, TypeGuard

import torch

import cnnlab
from cnnlab.data.transforms import BatchTransform
from cnnlab.errors import CnnlabError
from cnnlab.files import read_bytes, write_text_atomic
from cnnlab.runs.load import LoadedRun

METADATA_VERSION = 1
METADATA_KEY = "cnnlab"  # ONNX metadata_props key
EXTRA_FILE = "cnnlab.json"  # TorchScript extra file name
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PREPROCESSING_KEYS = ("classes", "channels", "stored_size", "input_size", "mean", "std", "resize", "permutation")


def sidecar_path(model_path: str | Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def build_metadata(
    trained: LoadedRun, format: str, file_name: str, batch: int | None, opset: int | None = None
) -> dict[str, Any]:
    """Plain-JSON description of an export of `trained` (`batch` None: any batch size)."""
    pre = trained.preprocessing()
    size = trained.input_size
    metadata: dict[str, Any] = {
        "cnnlab_export": METADATA_VERSION,
        "format": format,
        "file": file_name,
        "model": trained.config.model,
        "model_options": dict(trained.config.model_options),
        "dataset": trained.config.dataset,
        "checkpoint": trained.checkpoint.get("path"),
        "epoch": trained.checkpoint.get("epoch"),
        "input": {
            "name": INPUT_NAME,
            "shape": [batch if batch else "batch", pre["channels"], size, size],
            "dtype": "float32",
            "layout": "NCHW",
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": [batch if batch else "batch", len(pre["classes"])],
            "meaning": "class scores; softmax gives probabilities, argmax the class",
        },
        "classes": pre["classes"],
        "preprocessing": pre,
        "cnnlab": cnnlab.__version__,
        "torch": torch.__version__,
    }
    if opset is not None:
        metadata["opset"] = opset
    return metadata


def write_sidecar(model_path: str | Path, metadata: dict[str, Any]) -> Path:
    path = sidecar_path(model_path)
    write_text_atomic(path, json.dumps(metadata, indent=2) + "\n")
    return path


# Bounds far above anything cnnlab exports (28/32-pixel datasets, inputs resized up to 224), so a
# tampered file cannot make predict allocate or loop without limit.
MAX_SIDECAR_BYTES = 16 << 20
MAX_SIZE = 1024  # stored_size and input_size, pixels per side
MAX_CHANNELS = 4
MAX_CLASSES = 100_000
MAX_CLASS_NAME = 1000  # characters


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_in(value: Any, low: int, high: int) -> bool:
    return _is_int(value) and low <= value <= high


def _metadata_problem(metadata: dict[str, Any]) -> str | None:
    """What is wrong with `metadata` as the dict `build_metadata` writes (checked: what predict relies on), or None."""
    if metadata.get("format") not in ("onnx", "torchscript"):
        return f"format must be 'onnx' or 'torchscript', got {metadata.get('format')!r:.40}"
    classes = metadata.get("classes")
    if not isinstance(classes, list) or not 0 < len(classes) <= MAX_CLASSES:
        return f"classes must be a list of 1 to {MAX_CLASSES:,} names"
    if not all(isinstance(c, str) and len(c) <= MAX_CLASS_NAME for c in classes):
        return f"classes must be names (strings of at most {MAX_CLASS_NAME} characters)"
    pre = metadata["preprocessing"]
    if not isinstance(pre, dict):
        return "preprocessing must be a dict"
    missing = [k for k in PREPROCESSING_KEYS if k not in pre]
    if missing:
        return f"preprocessing lacks {', '.join(missing)}"
    if pre["classes"] != classes:
        return "preprocessing.classes differs from classes"
    channels, stored, size = pre["channels"], pre["stored_size"], pre["input_size"]
    if not _int_in(channels, 1, MAX_CHANNELS):
        return f"preprocessing.channels must be an integer 1..{MAX_CHANNELS}, got {channels!r:.40}"
    for key in ("stored_size", "input_size"):
        if not _int_in(pre[key], 1, MAX_SIZE):
            return f"preprocessing.{key} must be an integer 1..{MAX_SIZE}, got {pre[key]!r:.40}"
    if pre["resize"] is not None and pre["resize"] != size:
        return f"preprocessing.resize must be None or input_size ({size}), got {pre['resize']!r:.40}"
    if pre["resize"] is None and size != stored:
        return f"preprocessing.input_size {size} differs from stored_size {stored} without a resize"
    mean, std = pre["mean"], pre["std"]
    if (mean is None) != (std is None):
        return "preprocessing.mean and std must both be lists or both be None"
    for key, values in (("mean", mean), ("std", std)):
        if values is not None and not (
            isinstance(values, list) and len(values) == channels and all(_is_finite(v) for v in values)
        ):
            return f"preprocessing.{key} must be {channels} finite number(s), one per channel"
    if std is not None and not all(v > 0 for v in std):
        return "preprocessing.std must be positive"
    permutation = pre["permutation"]
    if permutation is not None:
        n = stored * stored
        if not (
            isinstance(permutation, list)
            and len(permutation) == n
            and all(_is_int(i) for i in permutation)
            and sorted(permutation) == list(range(n))
        ):
            return f"preprocessing.permutation must be a permutation of 0..{n - 1} (stored_size squared)"
    for key, rest in (("input", [channels, size, size]), ("output", [len(classes)])):
        part = metadata.get(key)
        shape = part.get("shape") if isinstance(part, dict) else None
        if not (
            isinstance(shape, list)
            and len(shape) == 1 + len(rest)
            and shape[1:] == rest
            and (shape[0] == "batch" or _int_in(shape[0], 1, 1 << 20))
        ):
            return f"{key}.shape must be [batch, {', '.join(map(str, rest))}], got {shape!r:.80}"
    if "verification" in metadata and not isinstance(metadata["verification"], dict):
        return "verification must be a dict"
    return None


def check_metadata(metadata: Any, source: str) -> dict[str, Any]:
    """`metadata` if it describes a cnnlab export as `build_metadata` writes it, else a one-line error.

    Sidecars travel with model files and may come from anywhere: everything predict
    relies on is checked here, so a tampered file fails as `not a cnnlab sidecar`
    instead of as a traceback, a wrong answer or an enormous allocation.
    """
    if not isinstance(metadata, dict) or "preprocessing" not in metadata:
        raise CnnlabError(
            f"{source} is not a cnnlab sidecar: no 'preprocessing' inside; re-export with `cnnlab export`"
        )
    version = metadata.get("cnnlab_export")
    if not _is_int(version) or version < 1:
        raise CnnlabError(
            f"{source} is not a cnnlab sidecar: cnnlab_export must be a positive integer, got {version!r:.40}"
        )
    if version > METADATA_VERSION:
        raise CnnlabError(
            f"{source} was written by a newer cnnlab (export metadata version "
            f"{metadata['cnnlab_export']}); upgrade cnnlab"
        )
    problem = _metadata_problem(metadata)
    if problem:
        raise CnnlabError(f"{source} is not a cnnlab sidecar: {problem}; re-export with `cnnlab export`")
    return metadata


def parse_metadata(text: str | bytes, source: str) -> dict[str, Any]:
    if len(text) > MAX_SIDECAR_BYTES:
        raise CnnlabError(
            f"{source} is not a cnnlab sidecar: {len(text):,} bytes, more than any cnnlab writes "
            f"({MAX_SIDECAR_BYTES:,})"
        )
    try:
        metadata = json.loads(text)
    except (ValueError, RecursionError) as err:  # RecursionError: absurdly nested JSON
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CnnlabError(f"{source} is not a cnnlab sidecar: cannot parse it as JSON: {first}") from None
    return check_metadata(metadata, source)


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The checked metadata in sidecar `path`, read only when its size is plausible, through `read_bytes`
    at the target of any link: a FIFO or device is one line at once, not a hang."""

    path = Path(path)
    size = path.stat().st_size
    if size > MAX_SIDECAR_BYTES:
        raise CnnlabError(
            f"{path} is not a cnnlab sidecar: {size:,} bytes, more than any cnnlab writes ({MAX_SIDECAR_BYTES:,})"
        )
    return parse_metadata(read_bytes(os.path.realpath(path), limit=MAX_SIDECAR_BYTES), str(path))


def transform_from_preprocessing(pre: dict[str, Any]) -> BatchTransform:
    """The run's evaluation transform rebuilt from the JSON alone (what any consumer has to do)."""
    permutation = pre.get("permutation")
    return BatchTransform(
        mean=tuple(pre["mean"]) if pre.get("mean") else None,
        std=tuple(pre["std"]) if pre.get("std") else None,
        resize=pre.get("resize"),
        permutation=torch.tensor(permutation, dtype=torch.int64) if permutation is not None else None,
    )
