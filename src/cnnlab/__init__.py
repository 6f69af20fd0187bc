"""cnnlab: train, inspect and compare the classic CNNs on the MNIST family.

>>> import cnnlab
>>> model = cnnlab.create_model("lenet")
>>> result = cnnlab.train(cnnlab.TrainConfig(model="convnet", dataset="mnist-sample", epochs=1))  # doctest: +ELLIPSIS
training convnet ...
>>> run = cnnlab.load_run(result.run_dir)  # the run folder it wrote, under runs/
"""

from __future__ import annotations

# typing.TYPE_CHECKING without importing typing (13 ms): the package imports in microseconds, so a Ctrl-C at start-up
# lands in cnnlab/__main__.py's handler, not in a traceback from typing (type checkers read this name as True).
TYPE_CHECKING = False

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
    "inspect_filters": "cnnlab.inspect.run",
    "inspect_features": "cnnlab.inspect.run",
    "inspect_saliency": "cnnlab.inspect.run",
    "inspect_mistakes": "cnnlab.inspect.run",
    "leaderboard": "cnnlab.experiments.compare",
    "format_leaderboard": "cnnlab.experiments.compare",
    "plot_leaderboard": "cnnlab.experiments.compare",
    "CnnlabError": "cnnlab.errors",
    "serve": "cnnlab.web",
    "create_app": "cnnlab.web",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # for type checkers (`X as X`: re-exported); at run time `__getattr__` imports on first use
    from cnnlab.data import list_datasets as list_datasets
    from cnnlab.data import load_dataset as load_dataset
    from cnnlab.errors import CnnlabError as CnnlabError
    from cnnlab.experiments.compare import format_leaderboard as format_leaderboard
    from cnnlab.experiments.compare import leaderboard as leaderboard
    from cnnlab.experiments.compare import plot_leaderboard as plot_leaderboard
    from cnnlab.export import export_model as export_model
    from cnnlab.inspect.run import inspect_features as inspect_features
    from cnnlab.inspect.run import inspect_filters as inspect_filters
    from cnnlab.inspect.run import inspect_mistakes as inspect_mistakes
    from cnnlab.inspect.run import inspect_saliency as inspect_saliency
    from cnnlab.models import count_macs as count_macs
    from cnnlab.models import create_model as create_model
    from cnnlab.models import list_models as list_models
    from cnnlab.models import model_info as model_info
    from cnnlab.models import register_model as register_model
    from cnnlab.models import summarize as summarize
    from cnnlab.runs import LoadedRun as LoadedRun
    from cnnlab.runs import load_run as load_run
    from cnnlab.training import TrainConfig as TrainConfig
    from cnnlab.training import train as train
    from cnnlab.web import create_app as create_app
    from cnnlab.web import serve as serve


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
