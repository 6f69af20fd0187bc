"""cnnlab: train, inspect and compare the classic CNNs on the MNIST family.

>>> import cnnlab
>>> model = cnnlab.create_model("lenet")
>>> result = cnnlab.train(cnnlab.TrainConfig(model="convnet", dataset="mnist-sample", epochs=1))
>>> run = cnnlab.load_run(result.run_dir)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public API, imported lazily so `cnnlab --help` stays quick and imports flow one way.
_EXPORTS = {
    "create_model": "cnnlab.models",
    "list_models": "cnnlab.models",
    "model_info": "cnnlab.models",
    "register_model": "cnnlab.models",
    "summarize": "cnnlab.models",
    "count_macs": "cnnlab.models",
    "load_dataset": "cnnlab.data",
    "list_datasets": "cnnlab.data",
    "TrainConfig": "cnnlab.training",
    "train": "cnnlab.training",
    "load_run": "cnnlab.runs",
    "LoadedRun": "cnnlab.runs",
    "export_model": "cnnlab.export",
    "CnnlabError": "cnnlab.errors",
    "serve": "cnnlab.web",
    "create_app": "cnnlab.web",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # for type checkers only: at run time each name is imported on first use (`__getattr__`)
    from cnnlab.data import list_datasets, load_dataset
    from cnnlab.errors import CnnlabError
    from cnnlab.export import export_model
    from cnnlab.models import count_macs, create_model, list_models, model_info, register_model, summarize
    from cnnlab.runs import LoadedRun, load_run
    from cnnlab.training import TrainConfig, train
    from cnnlab.web import create_app, serve


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
