"""`cnnlab predict MODEL.onnx IMAGE...`: classify with an exported file, preprocessing read from its JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.export.deps import ONNX_RUN, require
from cnnlab.export.runtime import open_exported, read_metadata
from cnnlab.export.sidecar import transform_from_preprocessing
from cnnlab.runs.predict import load_images, top_k


def predict_exported(
    path: str | Path, images: list[str | Path], k: int = 3, invert: bool = False
) -> list[dict[str, Any]]:
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
    check_scores(scores, len(pixels), len(pre["classes"]), path)
    return top_k(scores.softmax(1), list(pre["classes"]), names, k)


def check_scores(scores, count: int, classes: int, path: str | Path) -> None:
    """The model file gave one finite score per class the metadata names, for each image, else one line.

    The sidecar travels apart from the model: a 3-class file beside a 10-class sidecar would otherwise
    answer with a class name picked by the wrong index, and NaN scores with an arbitrary class.
    """
    if scores.ndim != 2 or scores.shape[0] != count or scores.shape[1] != classes:
        width = scores.shape[1] if scores.ndim == 2 else f"an array of shape {tuple(scores.shape)} of"
        raise CnnlabError(
            f"{str(path)!r} gives {width} scores per image but its metadata names {classes} classes; "
            "the model file and its sidecar do not belong together: re-export with `cnnlab export`"
        )
    if not bool(scores.isfinite().all()):
        raise CnnlabError(
            f"{str(path)!r} gave NaN or infinite scores, so it names no class; "
            "check the model file (re-export with `cnnlab export`)"
        )
