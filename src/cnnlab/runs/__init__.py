"""Opening a finished run: its model and preprocessing back (`load_run`), evaluation and prediction.

`inspect`, `export`, `report` and `serve` read run folders through this package, never through `training`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

_EXPORTS = {"load_run": "cnnlab.runs.load", "LoadedRun": "cnnlab.runs.load"}

if TYPE_CHECKING:  # for type checkers (`X as X`: re-exported); at run time `__getattr__` imports on first use
    from cnnlab.runs.load import LoadedRun as LoadedRun
    from cnnlab.runs.load import load_run as load_run


def __getattr__(name: str) -> object:
    if name in _EXPORTS:  # lazily, so `training` can import `runs.evaluate` without a cycle
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab.runs' has no attribute {name!r}")
