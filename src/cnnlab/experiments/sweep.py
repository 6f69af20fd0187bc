"""`cnnlab sweep`: a grid of ordinary runs (models x option values x seeds), skipping those already complete.

The grid's folder holds `runs/<name>/` (one run folder per point), `experiment.json` (what the grid
is, so `compare` and `report` recognise the folder), `results.csv`, `table.md` and `compare.png`.
Re-running the same command with the same `-o DIR` trains only what is missing.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.files import timestamped_dir, write_text_atomic
from cnnlab.experiments.compare import Leaderboard, format_leaderboard, leaderboard, plot_leaderboard
from cnnlab.experiments.runs import (
    RunRecord, check_not_conflicting, claim_experiment_folder, ensure_run, now_iso, read_run, safe_name, write_experiment_file,
)

# Set by the grid itself (--models, --seeds, -o), so not accepted by --set.
_GRID_KEYS = {"model": "--models", "seed": "--seeds", "out": "-o"}


@dataclass
class GridPoint:
    name: str  # the run folder's name inside DIR/runs/
    options: dict[str, Any]  # TrainConfig values of this run (besides `out`)


@dataclass
class GridResult:
    out_dir: Path
    records: list[RunRecord]  # one per grid point, in grid order
    actions: list[str]  # "trained" | "resumed" | "skipped", per grid point
    board: Leaderboard


# ---- --set key=value ----------------------------------------------------------------------


def parse_settings(items: Sequence[str]) -> dict[str, list[Any]]:
    """`["lr=0.01,0.1", "augment=true"]` -> {"lr": [0.01, 0.1], "augment": [True]}: each key is a grid axis.

    Numbers and booleans take comma-separated alternatives; every option (strings and JSON too)
    also takes alternatives by repeating the key (`--set normalize=none --set normalize=0.5,0.5`).
    """
    from cnnlab.training.config import TrainConfig, parse_option

    types = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    settings: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CnnlabError(f"--set expects KEY=VALUE (e.g. --set lr=0.01), got {item!r}")
        if key in _GRID_KEYS:
            raise CnnlabError(f"--set {key}=... is not allowed: set {key} with {_GRID_KEYS[key]}")
        if key not in types:
            raise CnnlabError(f"--set: unknown option {key!r}{did_you_mean(key, types)}; "
                              "use the names of `cnnlab train --help` with underscores, e.g. --set batch_size=64")
        base = types[key].replace(" | None", "").strip()
        parts = text.split(",") if base in ("int", "float", "bool") else [text]
        for part in parts:
            try:
                value = parse_option(key, part.strip())
            except CnnlabError as err:
                raise CnnlabError(f"--set {err}") from None
            if value not in settings.setdefault(key, []):
                settings[key].append(value)
    return settings


def _describe(key: str, value: Any) -> str:
    shown = json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else value
    return f"{key}={shown}"


def grid_points(models: Sequence[str], seeds: int, settings: dict[str, list[Any]] | None = None) -> list[GridPoint]:
    """Every model x every combination of the settings' values x seeds 0..seeds-1, named after what varies."""
    if not models:
        raise CnnlabError("--models needs at least one model name (see `cnnlab models`)")
    if seeds < 1:
        raise CnnlabError(f"--seeds must be a positive integer (the number of seeds per run), got {seeds}")
    settings = settings or {}
    keys = list(settings)
    varying = [k for k in keys if len(settings[k]) > 1]  # fixed values are not worth a place in every name
    points = []
    for model in dict.fromkeys(models):
        for values in itertools.product(*(settings[k] for k in keys)):
            chosen = dict(zip(keys, values))
            for seed in range(seeds):
                parts = [model, *(_describe(k, chosen[k]) for k in varying), f"seed{seed}"]
                points.append(GridPoint(safe_name("-".join(str(p) for p in parts)),
                                        {"model": model, **chosen, "seed": seed}))
    return points


# ---- running a grid ----------------------------------------------------------------------


def plan_grid(out_dir: Path, points: Sequence[GridPoint], common: dict[str, Any]) -> list:
    """The resolved TrainConfig of every point, each in out_dir/runs/<name>.

    Everything is resolved (so validated) and checked against complete runs already in the folder
    before anything is written or trained: a typo fails at once, not after an hour of training.
    """
    from cnnlab.training import resolve_config

    names = [p.name for p in points]
    if len(set(names)) != len(names):  # internal: grid names must be unique or runs would overwrite each other
        raise CnnlabError(f"internal: duplicate run names in the grid: {names}")
    configs = [resolve_config({**common, **p.options, "out": str(out_dir / "runs" / p.name)}) for p in points]
    for config in configs:
        check_not_conflicting(config)
    return configs


def run_grid(
    points: Sequence[GridPoint],
    configs: Sequence[Any],
    log: Callable[[str], None] = print,
) -> tuple[list[RunRecord], list[str]]:
    """Train every planned point (see `plan_grid`) unless it is complete already."""
    records, actions = [], []
    for i, (point, config) in enumerate(zip(points, configs), 1):
        done = read_run(config.out).complete
        log(f"[{i}/{len(points)}] {point.name}" + (": already complete, skipped" if done else ""))
        record, action = ensure_run(config, log)
        records.append(record)
        actions.append(action)
    return records, actions


def run_sweep(
    models: Sequence[str],
    *,
    seeds: int = 1,
    settings: dict[str, list[Any]] | None = None,
    out: str | Path | None = None,
    sort: str = "test_acc",
    log: Callable[[str], None] = print,
    **common: Any,
) -> GridResult:
    """Run the grid `models x settings x seeds` and write its leaderboard.

    `common` holds TrainConfig values shared by every run (dataset, data_dir, epochs, recipe,
    limit_train, limit_test, progress, ...); `settings` maps option names to lists of values to try.
    """
    from cnnlab.training.config import check_keys

    check_keys(common, "option")
    for key in _GRID_KEYS:
        if key in common:
            raise CnnlabError(f"run_sweep: pass {key} through {_GRID_KEYS[key]}, not as a common option")
    settings = settings or {}
    points = grid_points(models, seeds, settings)
    out_dir = Path(out) if out else timestamped_dir("sweep")
    info = {
        "kind": "sweep", "title": f"Sweep over {', '.join(dict.fromkeys(models))}", "status": "running",
        "created": now_iso(), "models": list(dict.fromkeys(models)), "seeds": seeds, "settings": settings,
        "common": common, "runs": [f"runs/{p.name}" for p in points], "figures": [],
    }
    claim_experiment_folder(out_dir, info, ("models", "seeds", "settings", "common"))
    configs = plan_grid(out_dir, points, common)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_experiment_file(out_dir, info)
    log(f"sweep of {len(points)} runs in {out_dir} (re-run with -o {out_dir} to continue after an interruption)")
    records, actions = run_grid(points, configs, log)
    board = leaderboard([r.path for r in records], sort)
    write_text_atomic(out_dir / "results.csv", format_leaderboard(board, "csv") + "\n")
    write_text_atomic(out_dir / "table.md", format_leaderboard(board, "md") + "\n")
    figures = []
    if board.rows:
        plot_leaderboard(board, out_dir / "compare.png")
        figures.append("compare.png")
    write_experiment_file(out_dir, {**info, "status": "complete", "finished": now_iso(), "figures": figures})
    return GridResult(out_dir, records, actions, board)
