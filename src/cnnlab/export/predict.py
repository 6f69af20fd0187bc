"""`cnnlab predict MODEL.onnx IMAGE...`: classify with an exported file, preprocessing read from its JSON."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.export.deps import ONNX_RUN, require
from cnnlab.export.runtime import open_exported, read_metadata
from cnnlab.export.sidecar import transform_from_preprocessing
from cnnlab.runs.predict import load_images, top_k


def predict_exported(path: str | Path, images: list[str | Path], k: int = 3, invert: bool = False) -> list[dict[str, Any]]:
    """Top-k predictions of an exported .onnx (or TorchScript) file for image files, like `predict_files`.

    Only the sidecar `<file>.json` (or the metadata inside the file) says how to
    preprocess: no checkpoint or run folder is needed.
    """
    if Path(path).suffix.lower() == ".onnx":
        require(ONNX_RUN, "predicting with an ONNX model")
    metadata = read_metadata(path)
    pre = metadata["preprocessing"]
    pixels, names = load_images(images, pre["channels"], pre["stored_size"], invert)
    scores = open_exported(path)(transform_from_preprocessing(pre)(pixels))
    return top_k(scores.softmax(1), list(pre["classes"]), names, k)
