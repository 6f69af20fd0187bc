"""Trained models kept in memory between requests, one lock each.

Requests run in a thread pool. A model's forward hooks (feature maps), its train/eval switch (Grad-CAM)
and its autograd state are shared, so every use of a model holds its lock; different runs' models
serve in parallel. A model is reloaded when its checkpoint files change.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.files import is_inside
from cnnlab.models import summarize
from cnnlab.runs.load import load_run

MAX_MODELS = 8  # a model of the small nets is well under a megabyte; 224-pixel nets are the reason for a bound


@dataclass
class ServedModel:
    trained: Any  # LoadedRun
    lock: threading.Lock
    conv_layers: list[tuple[str, tuple[int, ...]]]  # (path, output shape), in `cnnlab summary` order
    stamp: tuple

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.trained.spec.channels, self.trained.input_size, self.trained.input_size


def checkpoint_stamp(run_dir: Path) -> tuple:
    """mtimes of best.pt and last.pt (load_run takes best.pt, or last.pt when there is no best)."""
    stamp: list[int | None] = []
    for name in ("best.pt", "last.pt"):
        try:
            stamp.append(os.lstat(run_dir / "checkpoints" / name).st_mtime_ns)
        except OSError:
            stamp.append(None)
    return tuple(stamp)


def check_checkpoints(run_dir: Path) -> None:
    """Refuse a run whose checkpoints are links or special files before torch opens them: a link could lead
    torch.load to any file of this machine, and a FIFO would hang the request."""
    folder = run_dir / "checkpoints"
    if not is_inside(folder, run_dir):
        raise CnnlabError(f"{folder.name}/ of {run_dir.name} leads outside the run folder; the lab does not load it")
    for name in ("best.pt", "last.pt"):
        try:
            mode = os.lstat(folder / name).st_mode
        except OSError:
            continue  # missing: load_run says which one it wanted
        if not stat.S_ISREG(mode):
            raise CnnlabError(
                f"checkpoints/{name} of {run_dir.name} is not a regular file (a link or a "
                "special file); the lab loads only plain checkpoint files"
            )


class ModelCache:
    def __init__(self, size: int = MAX_MODELS):
        self.size = size
        self._models: OrderedDict[Path, ServedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Path, threading.Lock] = {}

    def get(self, run_dir: Path) -> ServedModel:
        """The run's best (else last) checkpoint as a model in eval mode; raises CnnlabError when it cannot load."""
        stamp = checkpoint_stamp(run_dir)
        with self._lock:
            served = self._models.get(run_dir)
            if served is not None and served.stamp == stamp:
                self._models.move_to_end(run_dir)
                return served
            loading = self._loading.setdefault(run_dir, threading.Lock())
        with loading:  # 20 simultaneous first requests load the checkpoint once
            with self._lock:
                served = self._models.get(run_dir)
                if served is not None and served.stamp == stamp:
                    return served
            check_checkpoints(run_dir)
            trained = load_run(run_dir, "best")
            summary = summarize(trained.model, trained.input_size, trained.spec.channels)
            convs = [(layer.path, tuple(layer.output_shape)) for layer in summary.layers if layer.type == "Conv2d"]
            served = ServedModel(trained, threading.Lock(), convs, stamp)
            with self._lock:
                self._models[run_dir] = served
                self._models.move_to_end(run_dir)
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
        return served
