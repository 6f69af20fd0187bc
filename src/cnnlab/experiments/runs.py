"""Run folders as experiments see them: read one back, or train it unless it is already complete.

Every experiment is a set of ordinary `cnnlab.training.train` runs, one folder each. A folder with
`summary.json` (status "complete") is done and skipped; one with a checkpoint from the same config
is resumed; anything else is trained from the start. So an interrupted experiment, re-run with the
same output folder, continues where it stopped.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.experiments.studies import LOCK_NAME, STUDY_DB, STUDY_JOURNAL
from cnnlab.files import UnsafeFileError, inside_checkpoints, timestamped_dir, write_json
from cnnlab.runfolder.config import INCIDENTAL_KEYS, RECORDED_KEYS
from cnnlab.runfolder.layout import is_locked

# COMPLETE, NOT_A_RUN and RunRecord: what experiments' callers compare records with
from cnnlab.runfolder.record import COMPLETE, INCOMPLETE, NOT_A_RUN, RunRecord, read_json_file, read_run  # noqa: F401

EXPERIMENT_FILE = "experiment.json"
# What the search engine keeps in an experiment folder beside experiment.json (experiments/studies.py).
ENGINE_FILES = (STUDY_DB, STUDY_JOURNAL, LOCK_NAME)


def expand_globs(patterns: list[str | Path]) -> list[Path]:
    """Paths with shell globs expanded (sorted); a pattern that matches nothing is kept as it is,
    so it can be listed as missing."""
    import glob

    paths: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        paths.extend(Path(m) for m in matches or [text])
    return paths


def expand_run_paths(patterns: list[str | Path]) -> list[Path]:
    """Folders named by paths or shell globs; an experiment folder stands for the runs it lists."""
    paths: list[Path] = []
    for path in expand_globs(patterns):
        paths.extend(experiment_runs(path) or [path])
    unique: list[Path] = []
    seen: set[Path] = set()
    for path in paths:  # the same run named twice (a glob and its experiment) is compared once
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def read_experiment(path: str | Path) -> dict[str, Any] | None:
    """The experiment.json of an experiment or sweep folder, or None for any other path."""
    path = Path(path)
    if not path.is_dir():
        return None
    try:
        return read_json_file(path / EXPERIMENT_FILE, path)
    except UnsafeFileError:
        return None


def claim_experiment_folder(out_dir: Path, info: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Refuse an experiment folder that holds anything but this very experiment (which a re-run continues).

    `keys` are the entries of experiment.json that define the experiment; the rest (status, times) may differ.
    """
    if inside_checkpoints(out_dir / EXPERIMENT_FILE):
        raise CnnlabError(
            f"-o {str(out_dir)!r} is inside a run's checkpoints/ folder, which only its training writes; "
            "choose another -o"
        )
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    stored = read_experiment(out_dir)
    if stored is None:
        raise CnnlabError(f"-o {str(out_dir)!r} exists and is not an experiment folder; choose another -o")
    wanted = json.loads(json.dumps({k: info.get(k) for k in ("kind", *keys)}, default=str))
    different = [k for k, v in wanted.items() if stored.get(k) != v]
    if different and not _any_run_started(out_dir, stored):
        # An earlier attempt that failed before its first run wrote anything: the corrected command takes over,
        # and the study that attempt's engine opened (no trial of it ran) goes with it.
        for name in ENGINE_FILES:
            (out_dir / name).unlink(missing_ok=True)
        return
    if different:
        key = different[0]
        raise CnnlabError(
            f"-o {str(out_dir)!r} holds another experiment ({stored.get('kind')}, {key}={stored.get(key)!r}, not "
            f"{wanted[key]!r}); re-run its own command to continue it, or choose another -o"
        )


def _any_run_started(out_dir: Path, stored: dict[str, Any]) -> bool:
    """Whether any run folder an experiment.json lists holds anything (the folder's own files aside)."""
    runs = stored.get("runs")
    listed = {str(run) for run in runs} if isinstance(runs, list) else set()
    for entry in out_dir.iterdir():
        if entry.name in (EXPERIMENT_FILE, "runs", *ENGINE_FILES) and not entry.is_symlink():
            continue
        return True  # something else lives here (results, figures, files of the user's): not ours to take over
    runs_dir = out_dir / "runs"
    if runs_dir.is_dir() and not runs_dir.is_symlink():
        for run in runs_dir.iterdir():
            if f"runs/{run.name}" not in listed or run.is_symlink() or not run.is_dir() or any(run.iterdir()):
                return True
    elif runs_dir.exists() or runs_dir.is_symlink():
        return True
    return False


def experiment_runs(path: str | Path) -> list[Path]:
    """The run folders an experiment folder lists (relative to it), or [] for any other path."""
    info = read_experiment(path)
    if not info or not isinstance(info.get("runs"), list):
        return []
    return [Path(path) / str(run) for run in info["runs"]]


def now_iso() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def write_experiment_file(out_dir: Path, info: dict[str, Any]) -> None:
    """experiment.json: what an experiment folder holds (kind, title, runs, figures, summary table)."""

    write_json(Path(out_dir) / EXPERIMENT_FILE, info)


def safe_name(text: str) -> str:
    """A folder-name-safe version of `text` (letters, digits and . _ = + - kept)."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_") or "run"


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    keys = sorted((set(stored) | set(wanted)) - set(INCIDENTAL_KEYS) - set(RECORDED_KEYS))
    return [f"{k}={stored.get(k)!r} (wanted {wanted.get(k)!r})" for k in keys if stored.get(k) != wanted.get(k)]


def _resumable(run_dir: Path, config_values: dict[str, Any]) -> bool:
    """Whether run_dir's last checkpoint is a partial run of this very config."""
    # here: it imports torch, which compare does without
    from cnnlab.training.resume import resume_checkpoint

    try:
        # last.pt only, as a resume reads it: a run killed between writing best.pt and last.pt has just best.pt,
        # which load_checkpoint would take in its place
        checkpoint = resume_checkpoint(run_dir)
    except CnnlabError:
        return False
    unfinished = checkpoint.get("epoch", 0) < config_values["epochs"] or checkpoint.get("step", 0) > 0
    return unfinished and not _differences(checkpoint.get("config", {}), config_values)


def check_not_conflicting(config) -> RunRecord:
    """The record of config.out; raises if it holds a complete run of other settings.

    Mixing two experiments in one table would be worse than stopping.
    """
    if not config.out:
        raise CnnlabError("internal: an experiment run needs config.out (the run folder)")
    record = read_run(config.out)
    if record.complete:
        differences = _differences(record.config, config.to_dict())
        if differences:
            raise CnnlabError(
                f"{config.out} already holds a complete run with other settings: {'; '.join(differences[:3])}; "
                "use another output folder (-o DIR) or delete that run"
            )
    return record


def ensure_run(config, log: Callable[[str], None] = print, on_epoch_end=None) -> tuple[RunRecord, str]:
    """Train `config` (a TrainConfig with `out` set) unless its folder already holds it complete; an interrupted
    run resumes from its last.pt, one that cannot be resumed is moved aside (kept), never overwritten.
    `on_epoch_end` is train()'s hook (a search reports each epoch to its pruner through it).

    Returns the run's record and what happened: "skipped", "resumed" or "trained".
    """
    # here: training loads torch, which compare and report's reading of runs do without
    from cnnlab.training import train

    record = check_not_conflicting(config)
    run_dir = Path(config.out)
    wanted = config.to_dict()
    if record.complete:
        return record, "skipped"
    if is_locked(run_dir):
        raise CnnlabError(f"{run_dir} is being trained by another cnnlab process; wait for it to finish")
    if record.status == INCOMPLETE and _resumable(run_dir, wanted):
        log(f"resuming the interrupted run in {run_dir}")
        train(config, resume=run_dir, on_epoch_end=on_epoch_end)
        return read_run(run_dir), "resumed"
    if record.status == INCOMPLETE:  # crashed past its last checkpoint: train again, keeping what it left
        kept = timestamped_dir(f"{run_dir.name}.incomplete", run_dir.parent)
        run_dir.rename(kept)
        log(f"{run_dir} held an incomplete run that cannot be resumed; moved it to {kept} and training anew")
    train(config, on_epoch_end=on_epoch_end)
    return read_run(run_dir), "trained"
