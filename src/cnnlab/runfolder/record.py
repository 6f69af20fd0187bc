"""Reading a run folder back: what it holds and its one status, for every reader (compare, report, sweeps,
experiments, the web lab).

A folder's `state` is one of running (a training holds its lock), complete (summary.json says so), stopped
(interrupted or crashed after a checkpoint: it resumes), failed (no checkpoint to resume from) or not a run
(nothing cnnlab wrote, or files it cannot read: the reason says which). `status` groups the middle three as
incomplete for tables. Only regular files inside the folder are read, each bounded (cnnlab.files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.files import UnsafeFileError, read_json
from cnnlab.runfolder.layout import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, is_locked, read_metrics

COMPLETE, INCOMPLETE, NOT_A_RUN = "complete", "incomplete", "not a run"
RUNNING, STOPPED, FAILED = "running", "stopped", "failed"  # the states of an incomplete run


@dataclass
class RunRecord:
    """What a folder holds: a complete run, an incomplete one (crashed, interrupted, running) or no run."""

    path: Path
    status: str  # COMPLETE | INCOMPLETE | NOT_A_RUN
    reason: str = ""  # why it is not complete, in words
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the TrainConfig values
    meta: dict[str, Any] = field(default_factory=dict)  # the rest of config.json (versions, device, command)
    history: list[dict[str, Any]] = field(default_factory=list)
    state: str = ""  # RUNNING | COMPLETE | STOPPED | FAILED | NOT_A_RUN (see the module docstring)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def complete(self) -> bool:
        return self.status == COMPLETE

    def get(self, key: str, default: Any = None) -> Any:
        """A summary value, falling back to the config (incomplete runs have no summary)."""
        value = self.summary.get(key)
        return self.config.get(key, default) if value is None else value


def read_json_file(path: Path, within: Path) -> dict[str, Any] | None:
    """A JSON object from a regular file inside `within`; None when missing. Raises UnsafeFileError (one line)
    for a link out, a special file, a file too large, or one that is not a JSON object."""
    if not path.exists() and not path.is_symlink():
        return None
    try:
        return read_json(path, within)
    except OSError as err:
        raise UnsafeFileError(f"cannot read {path.name}: {err.strerror or err}") from None


def _problem(err: Exception) -> str:
    return str(err).replace(" (see `cnnlab --help`)", "")


def read_run(path: str | Path) -> RunRecord:
    """Read a run folder without loading any model; never raises for a bad folder (see `_read_run`)."""
    record = _read_run(Path(path))
    record.state = NOT_A_RUN if record.status == NOT_A_RUN else run_state(record.path, record.status == COMPLETE)
    if record.state != COMPLETE and record.status == INCOMPLETE and not record.summary:
        done, planned = len(record.history), record.config.get("epochs", "?")
        record.reason = {
            RUNNING: f"running: a training holds its lock, after {done}/{planned} epochs",
            STOPPED: f"stopped after {done}/{planned} epochs (interrupted or crashed); it resumes from its last.pt",
            FAILED: f"failed after {done}/{planned} epochs, before its first checkpoint",
        }[record.state]
    return record


def run_state(path: Path, complete: bool) -> str:
    """RUNNING, COMPLETE, STOPPED or FAILED for a folder that holds a run: the one definition every reader uses."""
    if is_locked(path):
        return RUNNING
    if complete:
        return COMPLETE
    last = path / "checkpoints" / "last.pt"
    return STOPPED if last.is_file() and not last.is_symlink() else FAILED


def _read_run(path: Path) -> RunRecord:
    """What `path` holds, COMPLETE, INCOMPLETE or NOT_A_RUN with the reason.

    Only regular files inside the folder are read, each of bounded size; a folder whose files are links,
    special files, unparseable or of the wrong types is NOT_A_RUN (or INCOMPLETE) with the reason, never fatal.
    """
    path = Path(path)
    if not path.exists():
        return RunRecord(path, NOT_A_RUN, "no such file or folder")
    if not path.is_dir():
        return RunRecord(path, NOT_A_RUN, "not a folder")
    try:
        config_file = read_json_file(path / CONFIG_FILE, path)
        summary = read_json_file(path / SUMMARY_FILE, path)
    except UnsafeFileError as err:
        return RunRecord(path, NOT_A_RUN, f"unreadable: {_problem(err)}")
    if config_file is None and summary is None:
        if (path / "experiment.json").is_file():
            return RunRecord(path, NOT_A_RUN, "an experiment folder (pass it to compare to include its runs)")
        return RunRecord(path, NOT_A_RUN, "no config.json or summary.json")
    config_file = config_file or {}
    config = config_file.get("config", {}) if isinstance(config_file.get("config"), dict) else {}
    meta = {k: v for k, v in config_file.items() if k != "config"}
    summary_problem = _summary_problem(summary) if summary is not None else None
    if summary_problem:
        return RunRecord(path, NOT_A_RUN, f"unreadable: summary.json {summary_problem}", {}, config, meta)
    try:
        history = read_metrics(path / METRICS_FILE, path)
    except (OSError, UnsafeFileError) as err:
        return RunRecord(path, NOT_A_RUN, f"unreadable: {_problem(err)}", summary or {}, config, meta)
    if summary is not None and summary.get("status") == COMPLETE:
        return RunRecord(path, COMPLETE, "", summary, config, meta, history)
    done = len(history)
    planned = config.get("epochs", "?")
    reason = (
        f"status {summary.get('status')!r}"
        if summary is not None
        else f"no summary.json: crashed, interrupted or still running after {done}/{planned} epochs"
    )
    return RunRecord(path, INCOMPLETE, reason, summary or {}, config, meta, history)


# summary.json values that tables sort, format and plot: a number (or null) where a number goes.
_SUMMARY_NUMBERS = (
    "final_test_acc",
    "best_test_acc",
    "best_epoch",
    "epochs",
    "total_seconds",
    "mean_images_per_s",
    "params",
    "macs",
    "input_size",
    "final_val_acc",
    "best_val_acc",
)


def _summary_problem(summary: dict[str, Any]) -> str | None:
    """Why a hand-edited summary.json cannot be shown (a string or infinity where a number goes), or None."""
    for key in _SUMMARY_NUMBERS:
        value = summary.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"has {key}={value!r}, not a finite number"
    for key in ("model", "dataset", "recipe", "status"):
        if summary.get(key) is not None and not isinstance(summary[key], str):
            return f"has {key}={summary[key]!r}, not a string"
    return None
