"""A leaderboard of run folders: collect the numbers, sort them, render them as text, Markdown, CSV or JSON.

Folders that are not runs, or runs that never finished, are listed beside the leaderboard, never fatal.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, unknown_choice
from cnnlab.experiments.runs import expand_run_paths
from cnnlab.runfolder.record import RunRecord, read_run

# (key, header) of each leaderboard column, in display order.
COLUMNS = [
    ("run", "run"),
    ("model", "model"),
    ("dataset", "dataset"),
    ("recipe", "recipe"),
    ("epochs", "epochs"),
    ("params", "params"),
    ("macs", "MACs"),
    ("best_test_acc", "best acc"),
    ("final_test_acc", "final acc"),
    ("total_seconds", "seconds"),
    ("images_per_s", "images/s"),
    ("device", "device"),
]
NUMERIC = {"epochs", "params", "macs", "best_test_acc", "final_test_acc", "total_seconds", "images_per_s"}
# --sort KEY -> (column, best first descending?). Accuracy and speed: high first; cost: low first.
SORT_KEYS = {
    "test_acc": ("final_test_acc", True),
    "final_acc": ("final_test_acc", True),
    "final_test_acc": ("final_test_acc", True),
    "best_acc": ("best_test_acc", True),
    "best_test_acc": ("best_test_acc", True),
    "params": ("params", False),
    "macs": ("macs", False),
    "seconds": ("total_seconds", False),
    "time": ("total_seconds", False),
    "total_seconds": ("total_seconds", False),
    "images_per_s": ("images_per_s", True),
    "speed": ("images_per_s", True),
    "epochs": ("epochs", False),
    "model": ("model", False),
    "dataset": ("dataset", False),
    "recipe": ("recipe", False),
    "device": ("device", False),
    "run": ("run", False),
}
FORMATS = ("table", "md", "csv", "json")


@dataclass
class Leaderboard:
    rows: list[dict[str, Any]]  # complete runs, sorted; keys: the COLUMNS keys plus "path" and "label"
    others: list[RunRecord] = field(default_factory=list)  # incomplete runs and folders that are not runs
    records: list[RunRecord] = field(default_factory=list)  # every folder, in the order given

    def curves(self) -> list[dict[str, Any]]:
        """What `plots.compare_figure` needs: one dict per complete run, in leaderboard order."""
        by_path = {str(r.path): r for r in self.records}
        return [{**row, "history": by_path[row["path"]].history} for row in self.rows]


def run_row(record: RunRecord, label: str | None = None) -> dict[str, Any]:
    """The leaderboard values of one run (None where the folder does not say)."""
    images_per_s = record.summary.get("mean_images_per_s")
    if images_per_s is None and record.history:
        images_per_s = sum(r.get("images_per_s") or 0 for r in record.history) / len(record.history)
    return {
        "run": label or record.name,
        "path": str(record.path),
        "label": label or record.name,
        "status": record.status,
        "model": record.get("model"),
        "dataset": record.get("dataset"),
        "recipe": record.get("recipe"),
        "epochs": record.get("epochs"),
        "params": record.summary.get("params"),
        "macs": record.summary.get("macs"),
        "best_test_acc": record.summary.get("best_test_acc"),
        "final_test_acc": record.summary.get("final_test_acc"),
        "total_seconds": record.summary.get("total_seconds"),
        "images_per_s": images_per_s,
        "device": record.summary.get("device") or record.meta.get("device"),
    }


def _labels(records: list[RunRecord]) -> list[str]:
    """Folder names, or the whole path where two folders share a name."""
    counts = Counter(r.name for r in records)
    return [r.name if counts[r.name] == 1 else str(r.path) for r in records]


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    if key not in SORT_KEYS:
        raise unknown_choice("--sort key", key, SORT_KEYS)
    column, descending = SORT_KEYS[key]
    present = [r for r in rows if r.get(column) is not None]
    missing = [r for r in rows if r.get(column) is None]  # unknown values go last whichever the direction
    if column in NUMERIC:
        present.sort(key=lambda r: float(r[column]), reverse=descending)
    else:
        present.sort(key=lambda r: str(r[column]).lower(), reverse=descending)
    return present + missing


def leaderboard(paths: list[str | Path], sort: str = "test_acc") -> Leaderboard:
    """Read every folder (globs and experiment folders expanded) into a sorted leaderboard: `cnnlab compare`.

    `paths`: run folders, globs (`"runs/*"`) and experiment folders (a sweep's or a study's runs). `sort`: test_acc
    (the default), best_acc, params, macs, seconds or images_per_s. The result's `rows` are the complete runs, one
    dict each (model, dataset, accuracies, params, MACs, time, speed, path, label); `others` the incomplete runs and
    folders that are not runs, each with its reason. Print it with `format_leaderboard`, draw it with
    `plot_leaderboard`."""
    if not paths:
        raise CnnlabError("name at least one run folder, e.g. `cnnlab compare runs/*`")
    if sort not in SORT_KEYS:  # checked before reading, so a typo fails fast
        raise unknown_choice("--sort key", sort, SORT_KEYS)
    records = [read_run(p) for p in expand_run_paths(list(paths))]
    complete = [r for r in records if r.complete]
    rows = [run_row(r, label) for r, label in zip(complete, _labels(complete))]
    return Leaderboard(sort_rows(rows, sort), [r for r in records if not r.complete], records)


# ---- rendering ----------------------------------------------------------------------------


def format_value(key: str, value: Any) -> str:
    """A leaderboard cell as people read it: 97.12%, 6,442, 1.2 M, 3.4."""
    # here: the zoo and plots load torch and matplotlib, which compare's table does without
    from cnnlab.models.summary import format_count

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key in ("best_test_acc", "final_test_acc"):
        return f"{100 * float(value):.2f}%"
    if key == "params":
        return f"{int(value):,}"
    if key == "macs":
        return format_count(float(value))
    if key == "total_seconds":
        return f"{float(value):.1f}"
    if key == "images_per_s":
        return f"{float(value):,.0f}"
    return str(value)


def table_cells(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of the leaderboard (shared by text, Markdown and HTML)."""
    return [h for _, h in COLUMNS], [[format_value(k, row.get(k)) for k, _ in COLUMNS] for row in board.rows]


def _other_lines(board: Leaderboard) -> list[str]:
    return [f"{r.path}  ({r.status}: {r.reason})" for r in board.others]


def format_leaderboard(board: Leaderboard, fmt: str = "table") -> str:
    """The leaderboard as `cnnlab compare` prints it: `fmt` is table, md (Markdown), csv or json."""
    if fmt not in FORMATS:
        raise unknown_choice("--format", fmt, FORMATS)
    if fmt == "json":
        not_compared = [{**run_row(r), "reason": r.reason} for r in board.others]
        return json.dumps({"runs": board.rows, "not_compared": not_compared}, indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        keys = ["status", *(k for k, _ in COLUMNS), "path", "reason"]
        writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(board.rows)
        for record in board.others:
            writer.writerow({**run_row(record), "reason": record.reason})
        return buffer.getvalue().rstrip("\n")
    headers, cells = table_cells(board)
    numeric_columns = {i for i, (k, _) in enumerate(COLUMNS) if k in NUMERIC}
    lines: list[str] = []
    if fmt == "md":
        if cells:
            aligns = ["---:" if i in numeric_columns else "---" for i in range(len(headers))]
            lines += ["| " + " | ".join(headers) + " |", "|" + "|".join(aligns) + "|"]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        if board.others:
            lines += ["", f"Not compared ({len(board.others)}):", ""]
            lines += [f"- `{line}`" for line in _other_lines(board)]
        return "\n".join(lines).strip("\n") or "No run folders."
    # here: the zoo and plots load torch and matplotlib, which compare's table does without
    from cnnlab.models.summary import render_table

    if cells:
        lines.append(render_table(headers, cells, right=numeric_columns))
    if board.others:
        lines += ["", f"not compared ({len(board.others)}):"] + [f"  {line}" for line in _other_lines(board)]
    return "\n".join(lines).strip("\n") or "No run folders."


def plot_leaderboard(board: Leaderboard, path: str | Path) -> Path:
    """compare.png: accuracy vs time and vs params (one labelled point per run) and all test-accuracy curves."""
    # here: the zoo and plots load torch and matplotlib, which compare's table does without
    from cnnlab.experiments.plots import plot_compare

    return plot_compare(board.curves(), path)
