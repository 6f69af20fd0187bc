"""`cnnlab tune`: hyperparameter search on Optuna, every trial an ordinary run folder.

The study folder (`-o STUDY`) holds `study.db` (the Optuna study, SQLite; or a journal file, or a study in a
database server named by `--storage`), `runs/trial-NNNN/` (one run folder per trial, so compare, report,
inspect and serve work on them), `logs/trial-NNNN.log` (what each trial's training printed), and
`experiment.json` (the runs, a summary table, figures) with `trials.csv`, `table.md`, `search.png` and
`importances.png`, so `cnnlab compare STUDY` and `cnnlab report STUDY` work as for sweeps.

Selection is honest: every trial holds out `--val-split` training images (stratified, seeded) and the search
maximises the best validation accuracy over its epochs (the epoch best.pt keeps); the pruner sees the
validation accuracy of every epoch. The test set is read once, at the end, for the best trial only.

Re-running the same command continues the study; see `cnnlab.experiments.studies` for workers, storages,
heartbeats and retries.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, unknown_choice
from cnnlab.experiments.runs import (
    claim_experiment_folder,
    ensure_run,
    now_iso,
    read_experiment,
    read_run,
    write_experiment_file,
)
from cnnlab.experiments.space import Space, _show, apply, check_space, parse_space
from cnnlab.experiments.studies import (
    DONE,
    GO,
    WAIT,
    Plan,
    TrialFailed,
    counted,
    duplicate_retry,
    is_queued,
    open_storage,
    open_study,
    require_optuna,
    resolve_storage,
    run_workers,
    stop_if_interrupted,
    threads_per_worker,
    work,
)
from cnnlab.files import timestamped_dir, write_text_atomic

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
DEFAULT_VAL_SPLIT = 0.1
OWN = {"model": "MODEL", "out": "-o", "val_split": "--val-split"}  # set by tune itself


class StudyStopped(CnnlabError):
    """The study did not reach its budget: a worker failed or was killed (re-running continues it): exit 1."""

    exit_code = 1


@dataclass
class TuneResult:
    out_dir: Path
    study_name: str
    storage: str  # as experiment.json names it
    dashboard: str  # the optuna-dashboard command that opens the study
    rows: list[dict[str, Any]]  # one per counted trial, by number
    best: dict[str, Any] | None  # trial, run, params, val_acc, and test_acc (read once, from its run folder)
    complete: bool
    table: dict[str, Any] = field(default_factory=dict)  # experiment.json's summary_table


# ---- the training callback hook ------------------------------------------------------------------


def incidental_keys() -> set[str]:
    """Options that may differ between the machines and runs of one study (where and how, not what is trained)."""
    # here: training and Optuna load on use, so the tune command's checks stay fast
    from cnnlab.runfolder.config import INCIDENTAL_KEYS, RECORDED_KEYS

    return {*INCIDENTAL_KEYS, *RECORDED_KEYS, "dist_timeout"}


class _Reporter:
    """The trial's validation accuracy, epoch by epoch, to the study; asks the pruner after each."""

    def __init__(self, trial, epochs: int):
        self.trial = trial
        self.epochs = epochs  # the last one is never pruned: stopping there saves nothing and loses its result
        self.seen: set[int] = set()
        self.pruned_at: int | None = None

    def report(self, row: dict[str, Any]) -> bool:
        value, epoch = row.get("val_acc"), row.get("epoch")
        if value is None or not isinstance(epoch, int) or epoch in self.seen:
            return False
        self.trial.report(float(value), epoch)
        self.seen.add(epoch)
        return True

    def on_epoch_end(self, row: dict[str, Any]) -> bool | None:
        if self.report(row) and row["epoch"] < self.epochs and self.trial.should_prune():
            self.pruned_at = int(row["epoch"])
            return True
        return None


@contextlib.contextmanager
def _trial_output(path: Path):
    """What a trial's training prints (including test accuracy, which the search never looks at) goes to its log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


# ---- the runner: what one trial of a search does --------------------------------------------------


def make_runner(plan: Plan, log: Callable[[str], None]) -> TuneRunner:
    return TuneRunner(plan, log)


class TuneRunner:
    def __init__(self, plan: Plan, log: Callable[[str], None]):
        self.plan, self.log = plan, log
        self.folder = Path(plan.folder)
        self.model = plan.job["model"]
        self.space: Space = parse_space(plan.job["space"], self.model)
        self.base: dict[str, Any] = plan.job["base"]
        self.limit = plan.trials

    def sampler(self, seed: int | None):
        import optuna

        if self.plan.sampler == "grid":  # one shuffle of the grid in every worker: a grid id is the same point
            return optuna.samplers.GridSampler(self.space.grid(), seed=self.plan.sampler_seed or 0)
        if self.plan.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        startup = 10 if self.limit is None else max(3, min(10, self.limit // 3))
        # constant_liar: trials running elsewhere count as their likely outcome, so workers spread out.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)

    def pruner(self):
        import optuna

        epochs = self.plan.job.get("epochs") or 1
        if self.plan.pruner == "median":
            # Not on epoch 1 (steps are epochs, from 1): the first epoch's accuracy says little about the last.
            return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
        if self.plan.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
        return optuna.pruners.NopPruner()

    def budget(self, trials) -> str:
        import optuna

        if self.limit is None:
            return GO
        live = counted(trials)
        finished = sum(1 for t in live if t.state.is_finished())
        if finished >= self.limit:
            return DONE
        if any(t.state == optuna.trial.TrialState.WAITING for t in live):
            return GO
        running = sum(1 for t in live if t.state == optuna.trial.TrialState.RUNNING)
        return GO if finished + running < self.limit else WAIT

    def surplus(self, me, trials) -> str | None:
        if is_queued(me) or self.limit is None:
            return duplicate_retry(me, trials)
            return None
        slots = [
            (t.system_attrs.get("retry_history") or [t.number])[0] for t in counted(trials) if t.number != me.number
        ]
        if sum(1 for slot in slots if slot < me.number) >= self.limit:
            return f"taken after the study had its {self.limit} trials"
        return None

    def _run_folder(self, trial) -> str:
        """runs/trial-NNNN, created here so no other trial can take it; a retry continues its original's."""
        given = trial.user_attrs.get("run")
        if given:
            return str(given)
        runs = self.folder / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        for k in range(1, 1000):
            name = f"trial-{trial.number:04d}" + (f"-{k}" if k > 1 else "")
            try:
                (runs / name).mkdir()
            except FileExistsError:  # left by an earlier study in this folder: never reused
                continue
            trial.set_user_attr("run", f"runs/{name}")
            return f"runs/{name}"
        raise CnnlabError(f"no free run folder name for trial {trial.number} in {runs}")

    def run(self, trial, frozen) -> float:
        import optuna

        # here: training and Optuna load on use, so the tune command's checks stay fast
        from cnnlab.errors import DataError
        from cnnlab.runfolder.resolve import resolve_config
        from cnnlab.training.loop import NonFiniteLoss

        values = self.space.suggest(trial)
        run = self._run_folder(trial)
        run_dir = self.folder / run
        history = frozen.system_attrs.get("retry_history") or []
        again = f" (retry of trial {history[-1]})" if history else ""
        self.log(f"trial {trial.number}{again}: {' '.join(f'{k}={_show(v)}' for k, v in values.items())}  [{run}]")
        try:
            config = resolve_config({**apply(self.base, values), "out": str(run_dir)})
        except CnnlabError as err:
            _remove_if_empty(run_dir)
            raise TrialFailed(str(err)) from None
        reporter = _Reporter(trial, config.epochs)
        for row in read_run(run_dir).history:  # a resumed trial: the epochs it did before
            reporter.report(row)
        started = time.perf_counter()
        try:
            with _trial_output(self.folder / "logs" / f"{Path(run).name}.log"):
                record, action = ensure_run(config, print, reporter.on_epoch_end)
        except NonFiniteLoss as err:
            self.log(f"trial {trial.number}: failed: {err}")
            raise TrialFailed(str(err)) from None
        except DataError:
            raise  # every trial would fail alike: stop, and retry this one when the command runs again
        except CnnlabError as err:
            if _is_interruption(err):
                raise
            self.log(f"trial {trial.number}: failed: {err}")
            raise TrialFailed(str(err)) from None
        for row in record.history:  # what the hook did not see (no hook, or rows before a resume)
            reporter.report(row)
        trial.set_user_attr("epochs", len(record.history))
        trial.set_user_attr("seconds", round(record.summary.get("total_seconds") or time.perf_counter() - started, 1))
        trial.set_user_attr("action", action)
        if reporter.pruned_at is not None:
            trial.set_user_attr("pruned_at_epoch", reporter.pruned_at)
            last = record.history[-1].get("val_acc") if record.history else None
            self.log(
                f"trial {trial.number}: pruned after epoch {reporter.pruned_at}"
                + (f" (validation accuracy {last:.2%})" if last is not None else "")
            )
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at}")
        if not record.complete:
            raise TrialFailed(f"the run did not complete: {record.reason}")
        value = record.summary.get("best_val_acc")
        if value is None:
            raise TrialFailed(
                f"{record.path} has no validation accuracy (summary.json best_val_acc; it has "
                f"{', '.join(sorted(record.summary)) or 'nothing'}, {len(record.history)} epoch rows)"
            )
        self.log(
            f"trial {trial.number}: validation accuracy {value:.2%} ({len(record.history)} epochs, "
            f"{record.summary.get('total_seconds') or 0:.0f} s)"
        )
        return float(value)

    def after_trial(self, study) -> None:
        write_study_files(self.plan, study, "running", figures=False)


def _is_interruption(err: BaseException) -> bool:
    # here: training and Optuna load on use, so the tune command's checks stay fast
    from cnnlab.training.loop import TrainingInterrupted

    return isinstance(err, TrainingInterrupted)


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


# ---- the study's files -----------------------------------------------------------------------------


def _state(trial, retried_by: dict[int, int]) -> str:
    name = trial.state.name.lower()
    if trial.number in retried_by:
        return f"retried (trial {retried_by[trial.number]})"
    if name == "pruned" and trial.user_attrs.get("pruned_at_epoch"):
        return f"pruned (epoch {trial.user_attrs['pruned_at_epoch']})"
    if name == "fail":
        error = trial.user_attrs.get("error") or ""
        return "failed" + (f": {error[:160]}" + ("..." if len(error) > 160 else "") if error else "")
    return {"complete": "complete", "running": "running", "waiting": "waiting"}.get(name, name)


def trial_rows(trials, params: Sequence[str]) -> list[dict[str, Any]]:
    """One row per trial but those marked not_run, by number (retried ones say which trial retried them)."""
    retried_by = {}
    for t in trials:
        history = t.system_attrs.get("retry_history") or []
        if history:
            retried_by[history[-1]] = t.number
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        if "not_run" in t.user_attrs:
            continue
        value = (
            t.value
            if t.state.name == "COMPLETE"
            else (max(t.intermediate_values.values()) if t.intermediate_values else None)
        )
        rows.append(
            {
                "trial": t.number,
                "run": t.user_attrs.get("run"),
                "state": _state(t, retried_by),
                "finished": t.state.is_finished(),
                "val_acc": value,
                "epochs": t.user_attrs.get("epochs"),
                "seconds": t.user_attrs.get("seconds"),
                "counted": t.number not in retried_by,
                "complete": t.state.name == "COMPLETE",
                "host": (t.user_attrs.get("worker") or {}).get("host"),
                "params": {p: t.params.get(p) for p in params},
                "curve": dict(sorted(t.intermediate_values.items())),
            }
        )
    return rows


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}%"


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    complete = [r for r in rows if r["complete"] and r["val_acc"] is not None]
    return max(complete, key=lambda r: (r["val_acc"], -r["trial"])) if complete else None


def read_best(folder: Path, row: dict[str, Any] | None, test: bool = True) -> dict[str, Any] | None:
    """The best trial, with its test accuracy (`test`: only once the search ends) read from its run folder: the
    epoch best.pt keeps, chosen on validation."""
    if row is None:
        return None
    best = {k: row[k] for k in ("trial", "run", "val_acc", "params")}
    if not test:
        return {**best, "test_acc": None, "note": "read when the search ends"}
    record = read_run(folder / row["run"]) if row.get("run") else None
    best["test_acc"] = record.summary.get("best_test_acc") if record is not None and record.complete else None
    best["epoch"] = record.summary.get("best_epoch") if record is not None and record.complete else None
    if record is None or not record.complete:
        best["note"] = f"its run folder is not here (it ran on {row.get('host') or 'another machine'})"
    return best


def summary_table(plan: Plan, rows: list[dict[str, Any]], best: dict[str, Any] | None) -> dict[str, Any]:
    params = [p["name"] for p in plan.definition["space"]]
    headers = ["trial", "run", "state", "val acc", "epochs", *params, "seconds"]
    cells = [
        [
            str(r["trial"]),
            Path(r["run"]).name if r["run"] else "-",
            r["state"].split(":")[0],  # a failure's reason goes under the table: one long cell would widen it all
            _pct(r["val_acc"]),
            "-" if r["epochs"] is None else str(r["epochs"]),
            *(_param_cell(r["params"].get(p)) for p in params),
            "-" if r["seconds"] is None else f"{r['seconds']:.0f}",
        ]
        for r in rows
    ]
    done = sum(1 for r in rows if r["counted"] and r["finished"])
    caption = (
        f"{done} trial(s) of {plan.job['model']} on {plan.job['dataset']} ({plan.sampler} sampler, "
        f"{plan.pruner} pruning); the objective is the best validation accuracy on "
        f"{plan.job['base']['val_split']:,} held-out training images."
    )
    if best:
        caption += (
            f" Best: trial {best['trial']}, validation accuracy {_pct(best['val_acc'])}; its test accuracy, "
            f"read once after the search and never used to choose: "
            + (_pct(best["test_acc"]) if best.get("test_acc") is not None else best.get("note", "-"))
            + "."
        )
    failed = [(r["trial"], r["state"].split(": ", 1)[1]) for r in rows if r["state"].startswith("failed: ")]
    if failed:
        caption += " Failed: " + "; ".join(f"trial {number}: {why}" for number, why in failed[:5])
        caption += f"; and {len(failed) - 5} more." if len(failed) > 5 else "."
    return {"caption": caption, "headers": headers, "rows": cells}


def _param_cell(value: Any) -> str:
    return "-" if value is None else _show(value)


def _csv(rows: list[dict[str, Any]], params: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "run", "state", "val_acc", "epochs", "seconds", "host", *params])
    for r in rows:
        writer.writerow(
            [
                r["trial"],
                r["run"] or "",
                r["state"],
                "" if r["val_acc"] is None else f"{r['val_acc']:.6g}",
                r["epochs"] if r["epochs"] is not None else "",
                r["seconds"] if r["seconds"] is not None else "",
                r["host"] or "",
                *("" if r["params"].get(p) is None else r["params"][p] for p in params),
            ]
        )
    return buffer.getvalue()


def _markdown(table: dict[str, Any]) -> str:
    lines = [
        table["caption"],
        "",
        "| " + " | ".join(table["headers"]) + " |",
        "|"
        + "|".join("---:" if i in (0, 3, 4, len(table["headers"]) - 1) else "---" for i in range(len(table["headers"])))
        + "|",
    ]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n"


def write_study_files(plan: Plan, study, status: str, figures: bool) -> tuple[list[dict[str, Any]], dict | None, dict]:
    """experiment.json (runs, summary table, best trial, figures), trials.csv and table.md; with `figures`,
    search.png and importances.png too. Every file is written atomically. Returns (rows, best, table)."""
    folder = Path(plan.folder)
    params = [p["name"] for p in plan.definition["space"]]
    trials = study.get_trials(deepcopy=False)
    rows = trial_rows(trials, params)
    best = read_best(folder, best_row([r for r in rows if r["counted"]]), test=status != "running")
    table = summary_table(plan, rows, best)
    info = read_experiment(folder) or {}
    runs = list(dict.fromkeys(r["run"] for r in rows if r["run"] and (folder / r["run"]).is_dir()))
    listed = info.get("figures") if isinstance(info.get("figures"), list) else []
    if figures:
        # here: training and Optuna load on use, so the tune command's checks stay fast
        from cnnlab.experiments.tune_figures import write_figures

        listed = write_figures(folder, rows, study, params)
    info.update(
        {
            "status": status,
            "runs": runs,
            "summary_table": table,
            "best": best,
            "figures": listed,
            "trials": {"counted": sum(1 for r in rows if r["counted"]), "budget": plan.trials},
        }
    )
    if status != "running":
        info["finished"] = now_iso()
    write_experiment_file(folder, info)
    write_text_atomic(folder / "trials.csv", _csv(rows, params))
    write_text_atomic(folder / "table.md", _markdown(table))
    return rows, best, table


# ---- the search ---------------------------------------------------------------------------------------


def resolve_val_split(value: float | int | str | None, train_images: int) -> int:
    """--val-split as a number of images: N (an integer) or a fraction of the training images (0 < f < 1)."""
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0 or (number >= 1 and number != int(number)):
        raise CnnlabError(
            f"--val-split must be a number of training images (e.g. 5000) or a fraction of them "
            f"(e.g. 0.1), got {text!r}; a search needs one (it never selects on the test set)"
        )
    count = int(number) if number >= 1 else max(1, round(number * train_images))
    if count >= train_images:
        raise CnnlabError(f"--val-split {text} leaves no training images of the {train_images:,}; hold out fewer")
    return count


def _positive(name: str, value: Any, kind=int) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float) if kind is float else int)
        or not value > 0
        or (kind is float and not math.isfinite(value))
    ):
        raise CnnlabError(f"{name} must be a positive {'number' if kind is float else 'integer'}, got {value!r}")


def run_tune(
    model: str,
    *,
    space: Sequence[str],
    trials: int | None = None,
    seconds: float | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    val_split: float | int | str = DEFAULT_VAL_SPLIT,
    out: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    workers: int = 1,
    threads: int | None = None,
    sampler_seed: int | None = None,
    heartbeat: int = 30,
    log: Callable[[str], None] = print,
    **common: Any,
) -> TuneResult:
    """Search `space` for `model`: `trials` trials in all (the study's total, so re-running continues it)
    and/or for `seconds`. `common` holds the training options every trial shares (dataset, epochs, ...).

    Everything is checked before anything is written: the space, every value in it, the storage.
    """
    # here: training and Optuna load on use, so the tune command's checks stay fast
    from cnnlab.models.custom import is_custom, load_user_model
    from cnnlab.runfolder.config import TrainConfig, check_keys
    from cnnlab.runfolder.own import canonical_dataset, spec_of_request
    from cnnlab.runfolder.resolve import resolve_config

    require_optuna()
    check_keys(common, "option")
    for key, flag in OWN.items():
        if key in common:
            raise CnnlabError(f"run_tune: pass {key} as {flag}, not as a common option")
    if sampler not in SAMPLERS:
        raise unknown_choice("--sampler", sampler, SAMPLERS)
    if pruner not in PRUNERS:
        raise unknown_choice("--pruner", pruner, PRUNERS)
    _positive("--trials", trials)
    _positive("--time", seconds, float)
    _positive("--workers", workers)
    _positive("--threads", threads)
    _positive("--heartbeat", heartbeat)
    if trials is None and seconds is None and sampler != "grid":
        raise CnnlabError("say how long to search: --trials N (the study's total) and/or --time SECONDS")
    dataset = canonical_dataset(common.get("dataset", TrainConfig.dataset))
    if is_custom(model):
        model = load_user_model(model)  # your own model, named by the request: its sizes and options are its code's
    spec = spec_of_request(dataset, common)
    n_val = resolve_val_split(val_split, common.get("limit_train") or spec.train_size)
    base = {"progress": False, **common, "model": model, "dataset": dataset, "val_split": n_val}
    parsed = parse_space(space, model)
    resolved = resolve_config(base)
    check_space(parsed, base)
    limit = trials
    if sampler == "grid":
        size = parsed.grid_size()
        limit = min(trials or size, size)
    out_dir = Path(out) if out else timestamped_dir(f"tune-{model}")
    where = resolve_storage(storage, out_dir)
    name = study_name or out_dir.absolute().name
    definition: dict[str, Any] = {
        "kind": "tune",
        "model": model,
        "dataset": dataset,
        "space": parsed.to_list(),
        "val_split": n_val,
        "options": {k: v for k, v in sorted(common.items()) if k not in incidental_keys() | {"dataset"}},
        "objective": "best validation accuracy",
    }
    info = {
        "kind": "tune",
        "title": f"Search over {model} on {dataset}",
        "status": "running",
        "created": now_iso(),
        "definition": definition,
        "storage": where.spec,
        "study_name": name,
        "models": [model],
        "dataset": dataset,
        "options": {
            "space": parsed.texts(),
            "val_split": n_val,
            "sampler": sampler,
            "pruner": pruner,
            "epochs": resolved.epochs,
            **definition["options"],
        },
        "runs": [],
        "figures": [],
    }
    claim_experiment_folder(out_dir, info, ("definition", "storage", "study_name"))
    plan = Plan(
        "tune",
        str(out_dir.absolute()),
        storage,
        name,
        definition,
        job={"model": model, "dataset": dataset, "space": list(space), "base": base, "epochs": resolved.epochs},
        trials=limit,
        deadline=None if seconds is None else time.time() + seconds,
        sampler=sampler,
        sampler_seed=sampler_seed,
        pruner=pruner,
        heartbeat=heartbeat,
        workers=workers,
        threads=threads,
    )
    if not where.embedded:  # a server or a shared journal: reached, and its study checked, before anything is written
        open_study(plan, storage=open_storage(where, heartbeat), create=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(plan, create=True)
    stored = read_experiment(out_dir)
    if stored and stored.get("created"):
        info["created"] = stored["created"]  # a continued study keeps its start
    stored = stored or {}
    write_experiment_file(
        out_dir, {**stored, **info, "runs": stored.get("runs", []), "figures": stored.get("figures", [])}
    )
    budget = " and ".join(x for x in (f"{limit} trials" if limit else "", f"{seconds:g} s" if seconds else "") if x)
    log(
        f"study {name!r} in {out_dir} (storage {where.shown}): {budget}, {workers} worker(s) x "
        f"{threads_per_worker(plan) if workers > 1 or threads else 'auto'} thread(s)"
    )
    log(f"re-run the same command to continue it; watch it with: {where.dashboard()}")
    codes = _search(plan, log)
    return _finish(plan, study, codes, log)


def _search(plan: Plan, log: Callable[[str], None]) -> list[int]:
    """Run the workers: in this process (one), or as processes (several). Their exit statuses."""
    if plan.workers > 1:
        return run_workers(plan, log)
    saved_env, saved_threads = os.environ.get("OMP_NUM_THREADS"), 0
    if plan.threads:
        import torch

        saved_threads = torch.get_num_threads()
        os.environ["OMP_NUM_THREADS"] = str(plan.threads)  # the trainer keeps a count the user chose
        torch.set_num_threads(plan.threads)
    try:
        work(plan, make_runner(plan, log), log)
    except (KeyboardInterrupt, CnnlabError) as err:
        # here: training and Optuna load on use, so the tune command's checks stay fast
        from cnnlab.training.loop import TrainingInterrupted

        if isinstance(err, CnnlabError) and not isinstance(err, TrainingInterrupted):
            raise
        study = open_study(plan)
        write_study_files(plan, study, "interrupted", figures=False)
        signum = err.exit_code - 128 if isinstance(err, TrainingInterrupted) else 2
        raise TrainingInterrupted(
            f"interrupted; the running trial saved its checkpoint: re-run the same command to "
            f"continue the study in {plan.folder}",
            signum,
        ) from None
    finally:
        if plan.threads:
            import torch

            torch.set_num_threads(saved_threads)
            if saved_env is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved_env
    return [0]


def _finish(plan: Plan, study, codes: list[int], log: Callable[[str], None]) -> TuneResult:
    # here: training and Optuna load on use, so the tune command's checks stay fast
    from cnnlab.experiments.studies import make_runner as runner_of

    budget_left = runner_of(plan, log).budget(study.get_trials(deepcopy=False)) != DONE
    timed_out = plan.deadline is not None and time.time() >= plan.deadline
    complete = not budget_left or timed_out
    interrupted = any(c in (130, 143, -signal.SIGINT, -signal.SIGTERM) for c in codes)
    status = "complete" if complete else "interrupted" if interrupted else "incomplete"
    rows, best, table = write_study_files(plan, study, status, figures=True)
    where = resolve_storage(plan.storage, Path(plan.folder))
    result = TuneResult(
        Path(plan.folder),
        plan.study_name,
        where.spec,
        where.dashboard(),
        [r for r in rows if r["counted"]],
        best,
        complete,
        table,
    )
    if not complete:
        stop_if_interrupted(codes, plan.folder)
        raise StudyStopped(
            f"the study stopped before its budget: worker exit status(es) {codes}; the trials that "
            f"were running are retried when you re-run the same command ({plan.folder})"
        )
    return result


def format_result(result: TuneResult) -> str:
    """The summary table as text, then the best trial and its test accuracy (read once)."""
    # here: training and Optuna load on use, so the tune command's checks stay fast
    from cnnlab.models.summary import render_table

    table = result.table
    lines = [
        render_table(table["headers"], table["rows"], right={3, 4, len(table["headers"]) - 1})
        if table.get("rows")
        else "no trials yet",
        "",
    ]
    best = result.best
    if best:
        params = " ".join(f"{k}={_show(v)}" for k, v in best["params"].items())
        lines.append(
            f"best: trial {best['trial']} ({best['run']}): validation accuracy {_pct(best['val_acc'])} with {params}"
        )
        lines.append(
            "test accuracy of the best trial (test set, read once now; not used to choose): "
            + (_pct(best["test_acc"]) if best.get("test_acc") is not None else best.get("note", "-"))
        )
    else:
        lines.append("no trial completed")
    lines.append(
        f"study folder: {result.out_dir} (cnnlab compare/report {result.out_dir}); dashboard: {result.dashboard}"
    )
    return "\n".join(lines)
