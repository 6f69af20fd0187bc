"""The run folder: config.json, metrics.csv, summary.json, checkpoints/ and figures."""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.training.checkpoint import write_text_atomic

METRIC_COLUMNS = [
    "epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_seconds", "images_per_s",
]


def default_run_dir(model: str, dataset: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{model}-{dataset}-{stamp}"
    suffix = 1
    while path.exists():  # two runs started in the same second get distinct folders
        suffix += 1
        path = Path("runs") / f"{model}-{dataset}-{stamp}-{suffix}"
    return path


def prepare_run_dir(path: Path) -> Path:
    """Create the folder (and checkpoints/) or fail with one line when it cannot be written."""
    try:
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise CnnlabError(
            f"cannot write the run folder {str(path)!r}: {err.strerror}; choose another with --out DIR"
        ) from None
    return path


def provenance(device: str, argv: list[str] | None) -> dict[str, Any]:
    import torch

    from cnnlab import __version__

    return {
        "cnnlab": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": device,
        "command": argv if argv is not None else sys.argv,
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


class MetricsLog:
    """metrics.csv, appended row by row and flushed, so a crashed run keeps its history."""

    def __init__(self, path: Path, resume_after_epoch: int | None = None):
        self.path = path
        rows = []
        if resume_after_epoch is not None and path.exists():
            # Rows written after the checkpoint we resume from would be repeated: drop them.
            rows = [r for r in read_metrics(path) if r["epoch"] <= resume_after_epoch]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict]) -> None:
        lines = [",".join(METRIC_COLUMNS)]
        lines += [",".join(_fmt(r.get(c)) for c in METRIC_COLUMNS) for r in rows]
        write_text_atomic(self.path, "\n".join(lines) + "\n")

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            f.write(",".join(_fmt(row.get(c)) for c in METRIC_COLUMNS) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv rows with numbers parsed ('' -> None)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    parsed = []
    for row in rows:
        parsed.append({k: (None if v in ("", None) else (int(v) if k in ("epoch", "step") else float(v))) for k, v in row.items()})
    return parsed
