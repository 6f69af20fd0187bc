"""Training: the loop and what only it uses (config, optimizer, device, processes, checkpoints, the run folder).

Names are imported lazily, so `cnnlab.training.config` loads without torch (fast `--help`) and
`cnnlab.runs` can use the checkpoint format without an import cycle.
"""
from __future__ import annotations

_EXPORTS = {
    "TrainConfig": "cnnlab.training.config",
    "resolve_config": "cnnlab.training.config",
    "train": "cnnlab.training.loop",
    "TrainResult": "cnnlab.training.loop",
    "NonFiniteLoss": "cnnlab.training.loop",
    "TrainingInterrupted": "cnnlab.training.loop",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab.training' has no attribute {name!r}")
