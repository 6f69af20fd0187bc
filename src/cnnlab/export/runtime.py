"""Run an exported file the way a consumer would: onnxruntime for ONNX, torch.jit.load for TorchScript."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.errors import CnnlabError, unknown_choice
from cnnlab.export.deps import ONNX_RUN, require
from cnnlab.export.sidecar import METADATA_KEY, parse_metadata, read_sidecar, sidecar_path
from cnnlab.export.torchscript import load_torchscript

FORMATS = ("onnx", "torchscript")
SUFFIXES = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".pts": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
}
DEFAULT_NAMES = {"onnx": "model.onnx", "torchscript": "model.pt"}


def format_of(path: str | Path) -> str | None:
    """The export format a file name implies, or None."""
    return SUFFIXES.get(Path(path).suffix.lower())


@dataclass
class ExportedModel:
    """An exported model loaded for inference; call it on float (N, C, H, W) inputs to get (N, K) scores."""

    path: Path
    format: str
    metadata: dict[str, Any] | None  # embedded metadata, if the file carries it
    batch: int | None  # the fixed batch size the file takes, or None for any
    _run: Callable[[np.ndarray], np.ndarray]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Scores for `x`, fed in chunks of the file's fixed batch size (the last one zero-padded)."""
        x = x.detach().float().contiguous().cpu()
        if self.batch is None or len(x) == self.batch:
            return torch.from_numpy(np.asarray(self._run(x.numpy()))).float()
        outputs = []
        for start in range(0, len(x), self.batch):
            chunk = x[start : start + self.batch]
            real = len(chunk)
            if real < self.batch:
                chunk = torch.cat([chunk, chunk.new_zeros((self.batch - real, *chunk.shape[1:]))])
            outputs.append(torch.from_numpy(np.asarray(self._run(chunk.numpy())))[:real].float())
        return torch.cat(outputs)


def _open_onnx(path: Path) -> ExportedModel:
    ort = require(ONNX_RUN, "running an ONNX model")["onnxruntime"]
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the info lines are noise for a CLI
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - unreadable / unsupported model -> one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CnnlabError(f"onnxruntime cannot load {str(path)!r}: {first}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise CnnlabError(
            f"{str(path)!r} is not an image classifier export: expected one (N, C, H, W) input, "
            f"got {[(i.name, i.shape) for i in inputs]}"
        )
    first_dim = inputs[0].shape[0]
    props = session.get_modelmeta().custom_metadata_map
    metadata = parse_metadata(props[METADATA_KEY], f"{path.name} metadata") if METADATA_KEY in props else None
    input_name, output_name = inputs[0].name, outputs[0].name

    def run(x: np.ndarray) -> np.ndarray:
        try:
            return session.run([output_name], {input_name: x})[0]
        except Exception as err:  # noqa: BLE001 - e.g. a sidecar whose sizes do not fit the model: one line
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise CnnlabError(f"onnxruntime cannot run {str(path)!r} on input {list(x.shape)}: {first}") from None

    return ExportedModel(path, "onnx", metadata, first_dim if isinstance(first_dim, int) else None, run)


def _open_torchscript(path: Path) -> ExportedModel:

    module, text = load_torchscript(path)
    metadata = parse_metadata(text, f"{path.name} metadata") if text else None
    first_dim = metadata["input"]["shape"][0] if metadata else None

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(x)).float().numpy()

    return ExportedModel(path, "torchscript", metadata, first_dim if isinstance(first_dim, int) else None, run)


def open_exported(path: str | Path, format: str | None = None) -> ExportedModel:
    """Load an exported model; `format` defaults to the one its suffix implies."""
    path = Path(path)
    format = format or format_of(path)
    if format not in FORMATS:
        raise CnnlabError(
            f"cannot tell the format of {str(path)!r} from its suffix; "
            f"name it *.onnx or *.pt, or pass the format ({', '.join(FORMATS)})"
        )
    if not path.is_file():
        raise CnnlabError(f"no such exported model: {str(path)!r}")
    return _open_onnx(path) if format == "onnx" else _open_torchscript(path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """An export's metadata: the sidecar `<file>.json` if present, else what the file embeds."""
    path = Path(path)
    side = sidecar_path(path)
    if side.is_file():
        return read_sidecar(side)
    if not path.is_file():
        raise CnnlabError(f"no such exported model: {str(path)!r}")
    metadata = open_exported(path).metadata
    if metadata is None:
        raise CnnlabError(
            f"{str(path)!r} carries no cnnlab metadata and has no sidecar {side.name}; export it with `cnnlab export`"
        )
    return metadata


def check_format(format: str) -> str:
    if format not in FORMATS:
        raise unknown_choice("--format", format, FORMATS)
    return format
