"""What a consumer of an exported model needs, as JSON: beside the file (`<file>.json`) and inside it.

The same dict is embedded in the model file (ONNX `metadata_props["cnnlab"]`,
TorchScript extra file `cnnlab.json`), so a file that travels alone still
carries its classes and preprocessing; the sidecar adds the verification result.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import cnnlab
from cnnlab.data.transforms import BatchTransform
from cnnlab.errors import CnnlabError
from cnnlab.files import write_text_atomic
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


def build_metadata(trained: LoadedRun, format: str, file_name: str, batch: int | None,
                   opset: int | None = None) -> dict[str, Any]:
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
        "input": {"name": INPUT_NAME, "shape": [batch if batch else "batch", pre["channels"], size, size],
                  "dtype": "float32", "layout": "NCHW"},
        "output": {"name": OUTPUT_NAME, "shape": [batch if batch else "batch", len(pre["classes"])],
                   "meaning": "class scores; softmax gives probabilities, argmax the class"},
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


def check_metadata(metadata: Any, source: str) -> dict[str, Any]:
    """`metadata` if it describes a cnnlab export with everything preprocessing needs, else a one-line error."""
    if not isinstance(metadata, dict) or "preprocessing" not in metadata:
        raise CnnlabError(f"{source} is not cnnlab export metadata (no 'preprocessing'); re-export with `cnnlab export`")
    if metadata.get("cnnlab_export", 0) > METADATA_VERSION:
        raise CnnlabError(f"{source} was written by a newer cnnlab (export metadata version "
                          f"{metadata['cnnlab_export']}); upgrade cnnlab")
    missing = [k for k in PREPROCESSING_KEYS if k not in metadata["preprocessing"]]
    if missing:
        raise CnnlabError(f"{source}: preprocessing lacks {', '.join(missing)}; re-export with `cnnlab export`")
    return metadata


def parse_metadata(text: str | bytes, source: str) -> dict[str, Any]:
    try:
        metadata = json.loads(text)
    except ValueError as err:
        raise CnnlabError(f"cannot parse {source} as JSON: {err}") from None
    return check_metadata(metadata, source)


def transform_from_preprocessing(pre: dict[str, Any]) -> BatchTransform:
    """The run's evaluation transform rebuilt from the JSON alone (what any consumer has to do)."""
    permutation = pre.get("permutation")
    return BatchTransform(
        mean=tuple(pre["mean"]) if pre.get("mean") else None,
        std=tuple(pre["std"]) if pre.get("std") else None,
        resize=pre.get("resize"),
        permutation=torch.tensor(permutation, dtype=torch.int64) if permutation is not None else None,
    )
