"""Opening a finished run: its model and preprocessing back (`load_run`), evaluation and prediction.

`inspect`, `export`, `report` and `serve` read run folders through this package, never through `training`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

_EXPORTS = {"load_run": "cnnlab.runs.load", "LoadedRun": "cnnlab.runs.load"}

if TYPE_CHECKING:  # for type checkers only: at run time each name is imported on first use (`__getattr__`)
    from cnnlab.runs.load import LoadedRun, load_run


def __getattr__(name: str) -> object:
    if name in _EXPORTS:  # lazily, so `training` can import `runs.evaluate` without a cycle
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab.runs' has no attribute {name!r}")
