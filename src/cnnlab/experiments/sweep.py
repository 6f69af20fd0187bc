"""`cnnlab sweep`: a grid of ordinary runs (models x option values x seeds), skipping those already complete.

The grid's folder holds `runs/<name>/` (one run folder per point), `experiment.json` (what the grid
is, so `compare` and `report` recognise the folder), `results.csv`, `table.md` and `compare.png`.
Re-running the same command with the same `-o DIR` trains only what is missing.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.experiments.compare import Leaderboard, format_leaderboard, leaderboard, plot_leaderboard
from cnnlab.experiments.runs import (
    RunRecord,
    check_not_conflicting,
    claim_experiment_folder,
    ensure_run,
    now_iso,
    read_run,
    safe_name,
    write_experiment_file,
)
from cnnlab.files import timestamped_dir, write_text_atomic

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
    # here: training and Optuna load on use, so the sweep command's checks stay fast
    from cnnlab.runfolder.config import field_types, parse_option

    types = field_types()
    settings: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CnnlabError(f"--set expects KEY=VALUE (e.g. --set lr=0.01), got {item!r}")
        if key in _GRID_KEYS:
            raise CnnlabError(f"--set {key}=... is not allowed: set {key} with {_GRID_KEYS[key]}")
        if key not in types:
            raise CnnlabError(
                f"--set: unknown option {key!r}{did_you_mean(key, types)}; "
                "use the names of `cnnlab train --help` with underscores, e.g. --set batch_size=64"
            )
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


def _model_label(model: str) -> str:
    """A model's part of a run name: your own `nets/tiny.py:Net` or `pkg.tiny:Net` -> `tiny-Net`."""
    where, colon, attr = model.rpartition(":")
    stem = re.split(r"[/\\.]", where.removesuffix(".py"))[-1]
    return f"{stem}-{attr}" if colon else model


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
                parts = [_model_label(model), *(_describe(k, chosen[k]) for k in varying), f"seed{seed}"]
                points.append(
                    GridPoint(safe_name("-".join(str(p) for p in parts)), {"model": model, **chosen, "seed": seed})
                )
    return points


# ---- running a grid ----------------------------------------------------------------------


def plan_grid(out_dir: Path, points: Sequence[GridPoint], common: dict[str, Any]) -> list:
    """The resolved TrainConfig of every point, each in out_dir/runs/<name>.

    Everything is resolved (so validated) and checked against complete runs already in the folder
    before anything is written or trained: a typo fails at once, not after an hour of training.
    """
    # here: training and Optuna load on use, so the sweep command's checks stay fast
    from cnnlab.runfolder.resolve import resolve_config

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
    workers: int = 1,
    threads: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    heartbeat: int = 30,
    **common: Any,
) -> GridResult:
    """Run the grid `models x settings x seeds` and write its leaderboard.

    `common` holds TrainConfig values shared by every run (dataset, data_dir, epochs, recipe,
    limit_train, limit_test, progress, ...); `settings` maps option names to lists of values to try.
    With Optuna installed (cnnlab[tune]) the grid is a study (see `cnnlab.experiments.studies`): its points
    are queued trials, `workers` processes take them, and `storage` lets other machines join; without it,
    the points are trained one after another in this process.
    """
    # here: training and Optuna load on use, so the sweep command's checks stay fast
    from cnnlab.models.custom import is_custom, load_user_model
    from cnnlab.runfolder.config import check_keys
    from cnnlab.runfolder.own import canonical_dataset

    check_keys(common, "option")
    # Your own model and data by the names a run records (absolute), so a sweep run again finds its runs.
    models = [load_user_model(m) if is_custom(m) else m for m in models]
    if isinstance(common.get("dataset"), str):
        common = {**common, "dataset": canonical_dataset(common["dataset"])}
    for key in _GRID_KEYS:
        if key in common:
            raise CnnlabError(f"run_sweep: pass {key} through {_GRID_KEYS[key]}, not as a common option")
    for name, value in (("--workers", workers), ("--heartbeat", heartbeat), ("--threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise CnnlabError(f"{name} must be a positive integer, got {value!r}")
    settings = settings or {}
    points = grid_points(models, seeds, settings)
    out_dir = Path(out) if out else timestamped_dir("sweep")
    info = {
        "kind": "sweep",
        "title": f"Sweep over {', '.join(dict.fromkeys(models))}",
        "status": "running",
        "created": now_iso(),
        "models": list(dict.fromkeys(models)),
        "seeds": seeds,
        "settings": settings,
        "common": common,
        "runs": [f"runs/{p.name}" for p in points],
        "figures": [],
    }
    claim_experiment_folder(out_dir, info, ("models", "seeds", "settings", "common"))
    configs = plan_grid(out_dir, points, common)
    from cnnlab.experiments.studies import has_optuna

    if has_optuna():
        records, actions = _run_study(
            out_dir,
            info,
            points,
            configs,
            common,
            log,
            workers=workers,
            threads=threads,
            storage=storage,
            study_name=study_name,
            heartbeat=heartbeat,
        )
    else:
        if workers != 1 or storage:
            raise CnnlabError("--workers and --storage need Optuna: pip install 'cnnlab[tune]'")
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


# ---- the grid as a study ------------------------------------------------------------------------


def _param(value: Any) -> Any:
    """A grid value as an Optuna parameter: JSON scalars as they are, anything else as its JSON text."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else json.dumps(value, sort_keys=True)


def _axes(points: Sequence[GridPoint]) -> dict[str, list]:
    axes: dict[str, list] = {}
    for point in points:
        for key, value in point.options.items():
            values = axes.setdefault(key, [])
            if _param(value) not in values:
                values.append(_param(value))
    return axes


def _run_study(
    out_dir: Path,
    info: dict[str, Any],
    points: Sequence[GridPoint],
    configs: Sequence[Any],
    common: dict[str, Any],
    log: Callable[[str], None],
    *,
    workers: int,
    threads: int | None,
    storage: str | None,
    study_name: str | None,
    heartbeat: int,
) -> tuple[list[RunRecord], list[str]]:
    """Queue the points not complete yet as trials of the grid's study, let the workers train them."""
    import optuna

    # here: training and Optuna load on use, so the sweep command's checks stay fast
    from cnnlab.experiments.studies import (
        Plan,
        counted,
        open_storage,
        open_study,
        reconcile,
        resolve_storage,
        run_workers,
        stop_if_interrupted,
        work,
    )
    from cnnlab.experiments.tune import incidental_keys

    where = resolve_storage(storage, out_dir)
    plan = Plan(
        "sweep",
        str(out_dir.absolute()),
        storage,
        study_name or out_dir.absolute().name,
        definition={
            "kind": "sweep",
            "models": info["models"],
            "seeds": info["seeds"],
            "settings": info["settings"],
            "common": {k: v for k, v in sorted(common.items()) if k not in incidental_keys()},
        },
        job={
            "points": [{"name": p.name, "options": p.options} for p in points],
            "common": common,
            "axes": _axes(points),
        },
        sampler="grid",
        heartbeat=heartbeat,
        workers=workers,
        threads=threads,
    )
    if not where.embedded:  # reached, and its study checked, before anything is written
        open_study(plan, storage=open_storage(where, heartbeat), create=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_experiment_file(out_dir, info)
    study = open_study(plan, create=True)
    log(f"sweep of {len(points)} runs in {out_dir} (re-run with -o {out_dir} to continue after an interruption)")
    reconcile(study, plan, log)
    trials = study.get_trials(deepcopy=False)
    first_new = len(trials)
    pending = {
        t.user_attrs.get("point")
        for t in counted(trials)
        if t.state in (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    }
    complete = [read_run(c.out).complete for c in configs]
    for i, (point, done) in enumerate(zip(points, complete), 1):
        if done:
            log(f"[{i}/{len(points)}] {point.name}: already complete, skipped")
        elif point.name not in pending:
            study.enqueue_trial(
                {k: _param(v) for k, v in point.options.items()},
                user_attrs={"point": point.name, "run": f"runs/{point.name}"},
            )
    if workers > 1:
        codes = run_workers(plan, log)
        if not all(read_run(c.out).complete for c in configs):
            stop_if_interrupted(codes, plan.folder)
    else:
        saved = None
        if threads:
            import torch

            saved = torch.get_num_threads()
            torch.set_num_threads(threads)
        try:
            work(plan, make_runner(plan, log), log)
        finally:
            if saved is not None:
                torch.set_num_threads(saved)
    records = [read_run(c.out) for c in configs]
    ran = {}
    for t in study.get_trials(deepcopy=False):
        if t.number >= first_new and t.state == optuna.trial.TrialState.COMPLETE:
            ran[t.user_attrs.get("point")] = t.user_attrs.get("action", "trained")
    actions = ["skipped" if done else ran.get(p.name, "missing") for p, done in zip(points, complete)]
    missing = [p.name for p, r in zip(points, records) if not r.complete]
    if missing:
        from cnnlab.experiments.tune import StudyStopped

        raise StudyStopped(
            f"{len(missing)} of {len(points)} runs did not complete ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}); re-run the same command to continue"
        )
    return records, actions


def make_runner(plan, log: Callable[[str], None]) -> SweepRunner:
    return SweepRunner(plan, log)


class SweepRunner:
    """One grid point per trial: the queued point's run folder, trained (or resumed) as `ensure_run` does."""

    def __init__(self, plan, log: Callable[[str], None]):
        self.plan, self.log = plan, log
        self.folder = Path(plan.folder)
        self.points = {p["name"]: p for p in plan.job["points"]}
        self.index = {p["name"]: i for i, p in enumerate(plan.job["points"], 1)}
        self.axes = plan.job["axes"]
        self.common = plan.job["common"]

    def sampler(self, seed: int | None):
        import optuna

        return optuna.samplers.GridSampler(self.axes, seed=0)

    def pruner(self):
        import optuna

        return optuna.pruners.NopPruner()

    def budget(self, trials) -> str:
        import optuna

        # here: training and Optuna load on use, so the sweep command's checks stay fast
        from cnnlab.experiments.studies import DONE, GO, WAIT, counted

        live = counted(trials)
        if any(t.state == optuna.trial.TrialState.WAITING for t in live):
            return GO
        return WAIT if any(t.state == optuna.trial.TrialState.RUNNING for t in live) else DONE

    def surplus(self, me, trials) -> str | None:
        # here: training and Optuna load on use, so the sweep command's checks stay fast
        from cnnlab.experiments.studies import duplicate_retry, is_queued

        if not is_queued(me) or me.user_attrs.get("point") not in self.points:
            return "not a queued point of the grid (another worker took the last one)"
        return duplicate_retry(me, trials)

    def run(self, trial, frozen) -> float:
        # here: training and Optuna load on use, so the sweep command's checks stay fast
        from cnnlab.experiments.studies import TrialFailed
        from cnnlab.runfolder.resolve import resolve_config

        name = frozen.user_attrs["point"]
        for axis, choices in self.axes.items():  # the point's values, as the study's parameters
            trial.suggest_categorical(axis, choices)
        self.log(f"[{self.index[name]}/{len(self.points)}] {name}")
        config = resolve_config(
            {**self.common, **self.points[name]["options"], "out": str(self.folder / "runs" / name)}
        )
        record, action = ensure_run(config, self.log)
        trial.set_user_attr("action", action)
        value = record.summary.get("final_test_acc")
        if value is None:
            raise TrialFailed(f"{record.path} has no final test accuracy")
        return float(value)

    def after_trial(self, study) -> None:
        pass
