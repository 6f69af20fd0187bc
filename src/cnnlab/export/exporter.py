"""`cnnlab export` as a function: checkpoint -> ONNX or TorchScript file + sidecar JSON, verified.

The file is written under a temporary name beside its destination, verified
there, and only then renamed into place with its sidecar: an export that fails
verification leaves nothing behind (and an earlier good export at that path
untouched).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.export.deps import ONNX_WRITE, require
from cnnlab.export.runtime import DEFAULT_NAMES, check_format, format_of
from cnnlab.export.sidecar import build_metadata, sidecar_path, write_sidecar
from cnnlab.export.verify import DEFAULT_ATOL, DEFAULT_COUNT, Verification, verify_export
from cnnlab.files import check_output, make_dirs, make_readable
from cnnlab.runs.load import LoadedRun, load_run


class VerificationFailed(CnnlabError):
    """The exported file does not compute what the PyTorch model computes."""

    exit_code = 1


@dataclass
class ExportResult:
    path: Path  # the exported model file
    sidecar: Path  # <path>.json
    format: str
    metadata: dict[str, Any]  # the sidecar's content
    verification: Verification


def default_output(trained: LoadedRun, format: str) -> Path:
    """RUN/export/model.onnx|model.pt, RUN being the folder that holds the checkpoint, wherever it now is."""
    return trained.run_dir / "export" / DEFAULT_NAMES[format]


def resolve_format(format: str | None, output: str | Path | None) -> str:
    """--format, else the one -o's suffix implies, else onnx; a contradiction is an error."""
    implied = format_of(output) if output else None
    if format is None:
        return implied or "onnx"
    check_format(format)
    if implied and output is not None and implied != format:  # output is set whenever implied is
        raise CnnlabError(
            f"-o {str(output)!r} looks like a {implied} file but --format is {format}; "
            f"name it {Path(output).stem}{'.onnx' if format == 'onnx' else '.pt'} or pass --format {implied}"
        )
    return format


def _write(
    trained: LoadedRun, format: str, path: Path, metadata: dict[str, Any], dynamic_batch: bool, opset: int | None
) -> None:
    channels, size = metadata["input"]["shape"][1], trained.input_size
    # A dynamic batch is traced at 2: torch.export would specialise a batch of 1 into the graph.
    example = torch.zeros(2 if dynamic_batch else 1, channels, size, size)
    if format == "onnx":
        from cnnlab.export.onnx import write_onnx  # here: each format's module loads its optional packages

        write_onnx(trained.model, example, path, metadata, dynamic_batch=dynamic_batch, opset=opset)
    else:
        from cnnlab.export.torchscript import write_torchscript

        write_torchscript(trained.model, example, path, metadata)


def export_model(
    source: str | Path,
    format: str | None = None,
    output: str | Path | None = None,
    *,
    which: str = "best",
    dynamic_batch: bool = False,
    opset: int | None = None,
    verify_count: int = DEFAULT_COUNT,
    atol: float = DEFAULT_ATOL,
    overwrite: bool = False,
) -> ExportResult:
    """Export the model of a run folder or checkpoint, verify the file, write `<file>.json` beside it.

    `format`: "onnx" | "torchscript" (default: from `output`'s suffix, else onnx). `output`: default
    RUN/export/model.onnx or model.pt. Without `dynamic_batch` the file takes batches of exactly 1.
    Raises VerificationFailed (exit code 1) if the file's scores differ from the model's.
    """
    format = resolve_format(format, output)
    if opset is not None and format != "onnx":
        raise CnnlabError(f"--opset applies to --format onnx only, not {format}; leave it out")
    if format == "onnx":
        require(ONNX_WRITE, "ONNX export")  # before any work, so a missing package is the first thing said
    if verify_count < 1:
        raise CnnlabError(f"verify_count must be a positive integer, got {verify_count}")
    trained = load_run(source, which)
    path = Path(output) if output else default_output(trained, format)
    if path.is_dir():
        raise CnnlabError(f"-o {str(path)!r} is a folder; give a file name such as {path / DEFAULT_NAMES[format]}")
    check_output(path, overwrite)
    check_output(sidecar_path(path), overwrite)
    make_dirs(path.parent)
    metadata = build_metadata(trained, format, path.name, None if dynamic_batch else 1)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _write(trained, format, tmp, metadata, dynamic_batch, opset)
        verification = verify_export(tmp, trained, format=format, count=verify_count, atol=atol)
        if not verification.passed:
            raise VerificationFailed(
                f"the exported {format} model does not match the PyTorch model, so {path} was not written: "
                f"{verification.reason} ({verification.source}, max abs diff {verification.max_abs_diff:.3g}, "
                f"tolerance {verification.tolerance:.3g})"
            )
        sidecar = write_sidecar(path, {**metadata, "verification": verification.to_dict()})
        os.replace(tmp, path)
        make_readable(path, sidecar)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ExportResult(path, sidecar, format, {**metadata, "verification": verification.to_dict()}, verification)
