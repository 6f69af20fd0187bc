"""Opening a finished run: its model and preprocessing back (`load_run`), evaluation and prediction.

`inspect`, `export`, `report` and `serve` read run folders through this package, never through `training`.
"""
from __future__ import annotations

_EXPORTS = {"load_run": "cnnlab.runs.load", "LoadedRun": "cnnlab.runs.load"}


def __getattr__(name: str):
    if name in _EXPORTS:  # lazily, so `training` can import `runs.evaluate` without a cycle
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab.runs' has no attribute {name!r}")
