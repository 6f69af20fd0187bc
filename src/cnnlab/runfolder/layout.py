"""The run folder's layout: its file names, the columns of its two logs, and its lock.

RUN/config.json      {"config": the resolved TrainConfig, and provenance: versions, device, command}
RUN/metrics.csv      a row per epoch (METRIC_COLUMNS, then VAL_COLUMNS with a validation split)
RUN/steps.csv        a row every ~10% of an epoch, for live curves (STEP_COLUMNS): the mean loss and accuracy
                     of the `images` since the previous row (older runs: the running mean since the epoch's
                     start, and no `images` column; the lab converts them)
RUN/summary.json     written once, at the end ("status": "complete")
RUN/checkpoints/     last.pt, best.pt, epoch-NNN.pt (runfolder/checkpoint.py)
RUN/.lock            held (flock, exclusive) by the training for its whole life
RUN/*.png            curves, confusion, per_class, samples
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from cnnlab.files import UnsafeFileError, open_regular, read_csv

CONFIG_FILE, SUMMARY_FILE, METRICS_FILE, STEPS_FILE = "config.json", "summary.json", "metrics.csv", "steps.csv"
METRIC_COLUMNS = [
    "epoch",
    "step",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "lr",
    "epoch_seconds",
    "images_per_s",
]
VAL_COLUMNS = ["val_loss", "val_acc"]  # after the others, only in runs with a validation split
# loss and accuracy: means over the `images` since the previous row (older runs: since the epoch's start, no `images`)
STEP_COLUMNS = ["epoch", "step", "loss", "accuracy", "lr", "images_per_s", "elapsed", "images"]
LOCK_FILE = ".lock"
# What a finished, interrupted or crashed run leaves in its folder: any of these means "a run is here".
RUN_FILES = ("config.json", "metrics.csv", "steps.csv", "summary.json", "checkpoints")

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second writer is not detected there
    fcntl = None


def is_locked(path: str | Path) -> bool:
    """Whether a training process holds `path`'s lock right now (a running run)."""
    if fcntl is None:
        return False
    try:  # never through a link, never blocking on a FIFO planted as .lock
        fd = open_regular(Path(path) / LOCK_FILE, within=path, limit=None)
    except (OSError, UnsafeFileError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def read_metrics(path: Path, within: Path | None = None, missing_ok: bool = True) -> list[dict[str, Any]]:
    """metrics.csv (or steps.csv) rows with numbers parsed ('' -> None): a regular file inside `within`
    (default: its own folder), of bounded size; [] when it is missing and `missing_ok`."""
    path = Path(path)
    if missing_ok and not path.exists() and not path.is_symlink():
        return []
    return read_csv(path, integers=("epoch", "step"), within=within if within is not None else path.parent)
