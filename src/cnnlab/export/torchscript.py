"""Write a model to TorchScript by tracing, cnnlab's metadata embedded as the extra file `cnnlab.json`.

Tracing (not scripting) works for every zoo model: their forward passes are
plain tensor code, and the input check hook stands aside while tracing.
torch.jit is deprecated upstream but still the format C++ (libtorch) and
mobile runtimes load.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.export.sidecar import EXTRA_FILE
from cnnlab.files import write_bytes_atomic


def write_torchscript(model: nn.Module, example: torch.Tensor, path: str | Path, metadata: dict[str, Any]) -> None:
    """Trace `model` (eval mode) at `example` and save it to `path` with `metadata` inside."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # jit deprecation and tracer notes
            traced = torch.jit.trace(model, (example,), check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files={EXTRA_FILE: json.dumps(metadata)})
    except Exception as err:  # noqa: BLE001 - a tracer failure becomes one line naming the model
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CnnlabError(f"torch.jit.trace failed for {metadata.get('model')!r}: {first}") from None
    write_bytes_atomic(path, buffer.getvalue())


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, str]:
    """The module and its embedded metadata text ('' when it has none)."""
    extra = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as err:  # noqa: BLE001 - unreadable file -> one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CnnlabError(f"cannot load {str(path)!r} as TorchScript: {first}") from None
    module.eval()
    text = extra[EXTRA_FILE]
    return module, text.decode() if isinstance(text, bytes) else text
