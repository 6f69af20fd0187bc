"""Write a model to ONNX with torch's exporter, cnnlab's metadata embedded in `metadata_props`.

Opset 18 and newer come from the torch.export-based exporter (torch's default,
needs onnxscript). It cannot emit older opsets (its down-conversion fails
quietly and keeps 18), so those go through the legacy TorchScript-based
exporter while torch still ships it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.export.deps import ONNX_WRITE, require
from cnnlab.export.sidecar import INPUT_NAME, METADATA_KEY, OUTPUT_NAME
from cnnlab.files import write_bytes_atomic

MIN_OPSET = 7  # the oldest opset torch's legacy exporter writes
DYNAMO_MIN_OPSET = 18  # the oldest the torch.export-based exporter writes


def opset_range() -> tuple[int, int]:
    """(oldest, newest) opset `--opset` accepts with the installed onnx."""
    onnx = require(("onnx",), "ONNX export")["onnx"]
    return MIN_OPSET, int(onnx.defs.onnx_opset_version())


def check_opset(opset: int | None) -> None:
    if opset is None:
        return
    low, high = opset_range()
    if not low <= opset <= high:
        raise CnnlabError(
            f"--opset must be between {low} and {high} (the installed onnx's newest), got {opset}; "
            f"leave it out for the exporter's default"
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide the exporters' deprecation warnings and progress logging; real failures still raise."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _export_proto(model: nn.Module, example: torch.Tensor, dynamic_batch: bool, opset: int | None) -> Any:
    """The ModelProto of `model` traced at `example`."""
    onnx = require(ONNX_WRITE, "ONNX export")["onnx"]
    input_names, output_names = [INPUT_NAME], [OUTPUT_NAME]
    with _quiet():
        if opset is not None and opset < DYNAMO_MIN_OPSET:
            buffer = io.BytesIO()
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(
                model,
                (example,),
                buffer,  # type: ignore[arg-type]  # torch's annotation omits the file objects this exporter writes to
                dynamo=False,
                opset_version=opset,
                dynamic_axes=axes,
                do_constant_folding=True,
                input_names=input_names,
                output_names=output_names,
            )
            return onnx.load_from_string(buffer.getvalue())
        shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
        program = torch.onnx.export(
            model,
            (example,),
            None,
            dynamo=True,
            verbose=False,
            opset_version=opset,
            dynamic_shapes=shapes,
            input_names=input_names,
            output_names=output_names,
        )
        if program is None:  # torch returns the program whenever dynamo=True
            raise RuntimeError("torch.onnx.export returned no ONNX program")
        return program.model_proto


def default_opset(proto: Any) -> int:
    return next(int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def write_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    metadata: dict[str, Any],
    *,
    dynamic_batch: bool = False,
    opset: int | None = None,
) -> int:
    """Export `model` (eval mode) traced at `example` to `path`; returns the opset written.

    `metadata` goes into `metadata_props` (its "opset" is filled in here).
    """
    require(ONNX_WRITE, "ONNX export")  # one line naming what is missing, before torch's exporter fails
    check_opset(opset)
    try:
        proto = _export_proto(model, example, dynamic_batch, opset)
    except CnnlabError:
        raise
    except Exception as err:  # noqa: BLE001 - an exporter failure becomes one line naming the model
        raise CnnlabError(
            f"torch.onnx.export failed for {metadata.get('model')!r}"
            f"{f' at opset {opset}' if opset else ''}: {_first_line(err)}"
        ) from None
    written = default_opset(proto)
    if opset is not None and written != opset:
        raise CnnlabError(
            f"the ONNX exporter could not write opset {opset} for {metadata.get('model')!r} "
            f"(it produced {written}); pass --opset {written} or leave --opset out"
        )
    metadata["opset"] = written
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    proto.producer_name = "cnnlab (torch.onnx)"
    write_bytes_atomic(path, proto.SerializeToString())
    return written
