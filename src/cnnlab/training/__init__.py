"""Training: the loop and what only it uses (optimizer and schedule, the training state, resume, launching,
writing the run folder). The run's format (config, checkpoint layout, files) is `cnnlab.runfolder`'s.

Names are imported lazily: `import cnnlab.training` alone does not load torch.
"""
from __future__ import annotations

_EXPORTS = {
    "TrainConfig": "cnnlab.runfolder.config",
    "resolve_config": "cnnlab.runfolder.resolve",
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
