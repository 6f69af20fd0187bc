"""Run folders under the served roots: discovery, status, one table row each, curves; cached by mtime.

Only config.json, summary.json, metrics.csv and steps.csv are read here, never a checkpoint, so
hundreds of runs list in well under a second. A folder that cannot be read becomes a row with
status "unreadable: <reason>" instead of an error, so one bad run never hides the others.

Run folders may come from anyone (a shared disk, a downloaded archive), so every run file is read
through `cnnlab.files` as the rest of cnnlab reads it: never through a symlink, never a FIFO or device
(which would hang the request), never more than a bound; what the CLI refuses, the lab refuses too.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.files import read_json, read_text
from cnnlab.runfolder.layout import STEP_COLUMNS
from cnnlab.runfolder.record import COMPLETE, NOT_A_RUN, read_run, run_state

PRUNED_DIRS = {"checkpoints", "tensorboard", "inspect", "export", "__pycache__", "node_modules"}


def run_status(path: Path, summary: dict[str, Any] | None) -> str:
    """running | complete | stopped | failed: the status compare, report and sweeps give the same folder."""
    return run_state(path, bool(summary and summary.get("status") == COMPLETE))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of a file itself (a link is not followed), None when missing: what the caches key on."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _reason(err: Exception, path: Path) -> str:
    """The one-line reason a run file is refused, naming it by its name rather than its full path."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text.replace(repr(str(path)), path.name).replace(str(path), path.name)


def read_steps(path: Path) -> list[dict[str, float]]:
    """steps.csv rows as numbers; a half-written last line (the trainer appends) is skipped.

    Read through `cnnlab.files` (a regular file inside the run folder, bounded); the rows are parsed
    leniently because the trainer may be writing the file as we read it. Raises ValueError when the
    file is refused; a missing file is no rows.
    """
    try:
        text = read_text(path, within=path.parent)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise ValueError(_reason(err, path)) from None
    text = text[: text.rfind("\n") + 1]  # the trainer may be mid-way through the last line
    rows = []
    for row in csv.DictReader(io.StringIO(text, newline="")):
        try:
            rows.append({k: float(row[k]) for k in STEP_COLUMNS if row.get(k) not in (None, "")})
        except (TypeError, ValueError):
            continue
    return [r for r in rows if "epoch" in r and "step" in r]


@dataclass
class RunEntry:
    id: str  # "<root index>:<path relative to the root>", what URLs name a run by
    root: Path
    path: Path
    stamp: tuple = ()
    row: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # why the folder is unreadable

    @property
    def readable(self) -> bool:
        return self.error is None


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def read_entry(run_id: str, root: Path, path: Path, stamp: tuple) -> RunEntry:
    """The row of one run folder, read by `read_run` as every other reader of a run reads it."""
    record = read_run(path)
    entry = RunEntry(
        run_id,
        root,
        path,
        stamp,
        config=record.config,
        meta=record.meta,
        summary=record.summary,
        history=record.history,
    )
    if record.status == NOT_A_RUN:
        entry.error = _without_path(record.reason.removeprefix("unreadable: "), path)
    elif not record.config:
        entry.error = 'config.json has no "config" section (an older or foreign run folder?)'
    entry.row = _row(entry)
    return entry


def _without_path(reason: str, folder: Path) -> str:
    """A reason naming run files by their names, not by paths the page has no business showing."""
    quoted = re.escape("'" + str(folder) + "/") + r"([^']*)'"  # '/runs/x/summary.json' -> summary.json
    return re.sub(quoted, r"\1", reason).replace(str(folder) + "/", "")


def _row(entry: RunEntry) -> dict[str, Any]:
    config, summary, history = entry.config, entry.summary, entry.history
    rel = entry.path.relative_to(entry.root).as_posix()
    tested = [r["test_acc"] for r in history if _number(r.get("test_acc")) is not None]
    seconds = _number(summary.get("total_seconds"))
    if seconds is None and history:
        seconds = sum(_number(r.get("epoch_seconds")) or 0.0 for r in history)
    return {
        "id": entry.id,
        "name": rel if rel != "." else entry.path.name,
        "root": str(entry.root),
        "model": summary.get("model") or config.get("model"),
        "dataset": summary.get("dataset") or config.get("dataset"),
        "recipe": summary.get("recipe") or config.get("recipe"),
        "final_test_acc": _number(summary.get("final_test_acc")) if summary else (tested[-1] if tested else None),
        "best_test_acc": _number(summary.get("best_test_acc")) if summary else (max(tested) if tested else None),
        "epochs": len(history),
        "epochs_planned": config.get("epochs"),
        "seconds": seconds,
        "params": _number(summary.get("params")),
        "started": entry.meta.get("started"),
        "error": entry.error,
    }


EXPERIMENT_FILE = "experiment.json"
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")


def _read_experiment(path: Path) -> tuple[dict[str, Any], str | None]:
    """experiment.json as a dict, or ({}, why not): read as every run file is (no link, no FIFO, bounded)."""
    try:
        info = read_json(path / EXPERIMENT_FILE, within=path)
    except (OSError, ValueError, CnnlabError) as err:
        return {}, _reason(err, path / EXPERIMENT_FILE)
    return (info, None) if isinstance(info, dict) else ({}, "experiment.json is not a JSON object")


def experiment_row(experiment_id: str, root: Path, path: Path) -> dict[str, Any]:
    info, error = _read_experiment(path)
    best: dict[str, Any] = info["best"] if isinstance(info.get("best"), dict) else {}
    runs: list[Any] = info["runs"] if isinstance(info.get("runs"), list) else []
    rel = path.relative_to(root).as_posix()
    return {
        "id": experiment_id,
        "name": rel if rel != "." else path.name,
        "title": str(info.get("title") or path.name),
        "kind": str(info.get("kind") or "experiment"),
        "status": str(info.get("status") or "?"),
        "runs": len(runs),
        "best_val_acc": _number(best.get("val_acc")),
        "error": error,
    }


def experiment_detail(experiment_id: str, root: Path, path: Path) -> dict[str, Any]:
    """The page of a study (or sweep): the caption and trials table experiment.json holds, each trial's run id (so
    the page links it), the best trial, the settings, and the figures the experiment lists that are image files
    inside its own folder (served by /files/, which checks them again)."""
    info, error = _read_experiment(path)
    root_index = experiment_id.split(":", 1)[0]
    table: dict[str, Any] = info["summary_table"] if isinstance(info.get("summary_table"), dict) else {}
    headers = [str(h) for h in table.get("headers", [])] if isinstance(table.get("headers"), list) else []
    rows = [[_cell(v) for v in row] for row in table.get("rows", []) if isinstance(row, list)][:5000]
    runs = [r for r in info.get("runs", []) if isinstance(r, str)] if isinstance(info.get("runs"), list) else []
    run_ids = {}
    for run in runs:
        folder = (path / run).resolve()
        if folder.is_relative_to(path.resolve()) and (folder / "config.json").is_file():
            run_ids[Path(run).name] = f"{root_index}:{folder.relative_to(root.resolve()).as_posix()}"
    figures = []
    listed: list[Any] = info["figures"] if isinstance(info.get("figures"), list) else []
    for name in listed[:50]:
        figure = path / str(name)
        if (
            str(name).lower().endswith(FIGURE_SUFFIXES)
            and not Path(str(name)).is_absolute()
            and ".." not in Path(str(name)).parts
            and figure.is_file()
            and not figure.is_symlink()
        ):
            figures.append({"name": str(name), "url": f"/files/{root_index}/{figure.relative_to(root).as_posix()}"})
    settings = {k: info[k] for k in ("models", "dataset", "options", "settings", "common", "storage") if k in info}
    return {
        **experiment_row(experiment_id, root, path),
        "caption": str(table.get("caption") or ""),
        "headers": headers,
        "rows": rows,
        "run_ids": run_ids,
        "best": info.get("best") if isinstance(info.get("best"), dict) else None,
        "settings": settings,
        "figures": figures,
        "error": error,
    }


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else str(value)


class RunsIndex:
    """The run folders under `roots`, re-scanned on every listing; each folder re-read only when its files change."""

    def __init__(self, roots: list[str | Path]):
        self.roots = [Path(r).resolve() for r in roots]
        self._entries: dict[str, RunEntry] = {}
        self._lock = threading.Lock()
        self.missing_roots: list[str] = []
        self._experiments: list[tuple[str, Path, Path]] = []  # (id, root, folder) of folders with experiment.json

    def _discover(self) -> list[tuple[str, Path, Path]]:
        found, experiments, self.missing_roots = [], [], [str(r) for r in self.roots if not r.is_dir()]
        for index, root in enumerate(self.roots):
            # followlinks=False: a symlinked folder could lead out of the root; its runs are not served.
            for folder, dirs, files in os.walk(root, followlinks=False):
                dirs[:] = sorted(d for d in dirs if d not in PRUNED_DIRS and not d.startswith("."))
                path = Path(folder)
                if "config.json" in files:
                    found.append((f"{index}:{path.relative_to(root).as_posix()}", root, path))
                if EXPERIMENT_FILE in files:
                    experiments.append((f"{index}:{path.relative_to(root).as_posix()}", root, path))
        self._experiments = experiments
        return found

    def experiments(self) -> list[dict[str, Any]]:
        """The studies, sweeps and experiments under the roots, a line each (their runs are rows of `listing`)."""
        self.entries()
        return [experiment_row(*found) for found in self._experiments]

    def experiment(self, experiment_id: str) -> dict[str, Any] | None:
        """One experiment folder's experiment.json, its trials table with links to the runs, and its figures."""
        self.entries()
        found = next((f for f in self._experiments if f[0] == experiment_id), None)
        return None if found is None else experiment_detail(*found)

    def entries(self) -> list[RunEntry]:
        result = []
        with self._lock:
            seen = {}
            for run_id, root, path in self._discover():
                stamp = tuple(_stamp(path / name) for name in ("config.json", "summary.json", "metrics.csv"))
                entry = self._entries.get(run_id)
                if entry is None or entry.stamp != stamp:
                    entry = read_entry(run_id, root, path, stamp)
                seen[run_id] = entry
                result.append(entry)
            self._entries = seen
        return result

    def listing(self) -> dict[str, Any]:
        rows = []
        for entry in self.entries():
            status = f"unreadable: {entry.error}" if entry.error else run_status(entry.path, entry.summary)
            rows.append({**entry.row, "status": status})
        return {"roots": [str(r) for r in self.roots], "missing_roots": self.missing_roots, "runs": rows}

    def get(self, run_id: str) -> RunEntry | None:
        """The entry of a run id, re-read if its files changed; None for an id that is not a run under a root."""
        with self._lock:
            entry = self._entries.get(run_id)
        if entry is None:  # a run that appeared since the last listing
            return next((e for e in self.entries() if e.id == run_id), None)
        stamp = tuple(_stamp(entry.path / name) for name in ("config.json", "summary.json", "metrics.csv"))
        if stamp != entry.stamp:
            entry = read_entry(entry.id, entry.root, entry.path, stamp)
            with self._lock:
                self._entries[run_id] = entry
        return entry

    def status(self, entry: RunEntry) -> str:
        return f"unreadable: {entry.error}" if entry.error else run_status(entry.path, entry.summary)


def steps_per_epoch(entry: RunEntry, steps: list[dict[str, float]]) -> float | None:
    """Optimizer steps in one epoch: from metrics.csv (its step is cumulative), else steps.csv, else the config."""
    for row in entry.history:
        if _number(row.get("step")) and _number(row.get("epoch")):
            return row["step"] / row["epoch"]
    first = [r["step"] for r in steps if r["epoch"] == 1]
    if first and any(r["epoch"] > 1 for r in steps):
        return max(first)
    # The config is whatever the folder holds: a value of the wrong type means "unknown", not a 500.
    config = entry.config
    batch, limit = _number(config.get("batch_size")), _number(config.get("limit_train"))
    dataset, origin = config.get("dataset"), config.get("data_origin")
    if isinstance(origin, dict) and _number(origin.get("train_size")):  # your own data, as the run recorded it
        size = int(origin["train_size"])
        if limit and limit > 0:
            size = min(size, int(limit))
        return math.ceil(size / batch) if batch and batch > 0 else None
    if not isinstance(dataset, str):
        return None  # not a dataset name (get_spec would refuse it too)
    try:
        from cnnlab.data.catalog import get_spec  # here: cnnlab.data loads torch, which the listing does without

        size = get_spec(dataset).train_size
    except CnnlabError:
        return None
    if limit and limit > 0:
        size = min(size, int(limit))
    return math.ceil(size / batch) if batch and batch > 0 else None


def per_interval(steps: list[dict[str, float]]) -> list[dict[str, float]]:
    """steps.csv rows with the loss and accuracy of each logging interval (the steps since the previous row).

    The trainer writes them so (a row has `images`, the count they average over). Rows of older runs hold the
    running mean since the start of their epoch instead (no `images`): they are converted here, weighting by
    the steps each mean covers, so an old run plots the same way and shows no cliff at each epoch boundary.
    """
    result = []
    before: tuple[float, float, float | None, float | None] | None = None  # (epoch, step, loss, accuracy): old rows
    for row in steps:
        row = dict(row)
        if "images" in row:
            before = None
        else:
            epoch, step = row["epoch"], row["step"]
            if before is None or before[0] != epoch or not before[1] < step:
                before = (epoch, 0.0, None, None)  # the first row of an epoch is its own interval
            earlier = before
            before = (epoch, step, row.get("loss"), row.get("accuracy"))
            for key, old in (("loss", earlier[2]), ("accuracy", earlier[3])):
                value = row.get(key)
                if value is None or earlier[1] == 0:
                    continue
                if old is None:
                    row.pop(key)  # the running mean before is unknown: so is this interval's
                    continue
                interval = (value * step - old * earlier[1]) / (step - earlier[1])
                row[key] = min(max(interval, 0.0), 1.0) if key == "accuracy" else max(interval, 0.0)
        result.append(row)
    return result


def curves(entry: RunEntry) -> dict[str, Any]:
    """Train (per logging interval), test and validation (per epoch) series against fractional epochs: the train
    series from steps.csv when the trainer writes it, else metrics.csv; and the epoch table (metrics.csv)."""
    result: dict[str, Any] = {}
    try:
        steps = per_interval(read_steps(entry.path / "steps.csv"))
    except ValueError as err:  # refused (a link, a FIFO, too large): the epoch curves still show
        steps, result["steps_error"] = [], str(err)
    history = [r for r in entry.history if _number(r.get("epoch"))]
    test = [
        {"x": r["epoch"], "loss": _number(r.get("test_loss")), "acc": _number(r.get("test_acc"))}
        for r in history
        if _number(r.get("test_acc")) is not None
    ]
    val = [
        {"x": r["epoch"], "loss": _number(r.get("val_loss")), "acc": _number(r.get("val_acc"))}
        for r in history
        if _number(r.get("val_acc")) is not None
    ]
    epochs = [
        {
            key: _number(r.get(key))
            for key in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "val_loss", "val_acc", "lr")
        }
        for r in history
    ]
    if steps:
        per_epoch = steps_per_epoch(entry, steps) or max(r["step"] for r in steps) or 1
        train = [
            {
                "x": r["epoch"] - 1 + r["step"] / per_epoch,
                "loss": r.get("loss"),
                "acc": r.get("accuracy"),
                "lr": r.get("lr"),
                "elapsed": r.get("elapsed"),
            }
            for r in steps
        ]
        source, per = "steps.csv", "interval"
    else:
        train = [
            {"x": r["epoch"], "loss": r.get("train_loss"), "acc": r.get("train_acc"), "lr": r.get("lr")}
            for r in history
        ]
        source, per = "metrics.csv", "epoch"
    return {
        "source": source,
        "train_per": per,  # what one train point averages over: a logging interval, or a whole epoch
        "train": train,
        "test": test,
        "val": val,
        "epochs": epochs,
        "points": len(train) + len(test) + len(val),
        **result,
    }
