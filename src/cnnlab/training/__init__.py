"""Training: the loop and what only it uses (optimizer and schedule, the training state, resume, launching,
writing the run folder). The run's format (config, checkpoint layout, files) is `cnnlab.runfolder`'s.

Names are imported lazily: `import cnnlab.training` alone does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

_EXPORTS = {
    "TrainConfig": "cnnlab.runfolder.config",
    "resolve_config": "cnnlab.runfolder.resolve",
    "train": "cnnlab.training.loop",
    "TrainResult": "cnnlab.training.loop",
    "NonFiniteLoss": "cnnlab.training.loop",
    "TrainingInterrupted": "cnnlab.training.loop",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers (`X as X`: re-exported); at run time `__getattr__` imports on first use
    from cnnlab.runfolder.config import TrainConfig as TrainConfig
    from cnnlab.runfolder.resolve import resolve_config as resolve_config
    from cnnlab.training.loop import NonFiniteLoss as NonFiniteLoss
    from cnnlab.training.loop import TrainingInterrupted as TrainingInterrupted
    from cnnlab.training.loop import TrainResult as TrainResult
    from cnnlab.training.loop import train as train


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab.training' has no attribute {name!r}")
