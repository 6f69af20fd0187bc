"""Writing the run folder: owned by one run, locked while it trains, written only by rank 0.

The layout (file names, columns, the lock) is runfolder/layout.py's. `RunFolder` opens a folder for a new
run (refusing one that already holds a run) or for a resume, and holds an exclusive lock on
`.lock` for the life of the run, so a second writer fails at once. `RunWriter` is everything the
loop writes or prints; on other ranks it does nothing, so the loop never asks which rank it is.
"""

from __future__ import annotations

import errno
import os
import platform
import shutil
import socket
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cnnlab import __version__
from cnnlab.errors import CnnlabError
from cnnlab.files import (
    UnsafeFileError,
    confined,
    inside_checkpoints,
    make_dirs,
    open_append,
    timestamped_dir,
    write_bytes_atomic,
    write_json,
    write_text_atomic,
)
from cnnlab.runfolder.layout import (
    LOCK_FILE,
    METRIC_COLUMNS,
    RUN_FILES,
    STEP_COLUMNS,
    VAL_COLUMNS,
    fcntl,
    read_metrics,
)

if TYPE_CHECKING:  # imported where a run asks for TensorBoard: the extra is optional
    from cnnlab.training.tensorboard import TensorBoardLogger

# OSErrors that are the machine's doing, not the request's: passed on as they are (exit 1 from the CLI).
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def default_run_dir(model: str, dataset: str) -> Path:
    return timestamped_dir(f"{model}-{dataset}")


class RunFolder:
    """A run folder this process owns until `close()`: created (or reopened to resume) and locked."""

    def __init__(self, path: str | Path, resume: bool, restart: bool = False):
        """`restart`: the folder holds this very run, which died before its first checkpoint (an elastic
        restart, or --resume auto, checked that by its config): start it again in place instead of refusing."""
        self.path = Path(path)
        if inside_checkpoints(self.path / "config.json"):
            raise CnnlabError(
                f"--out {str(self.path)!r} is inside another run's checkpoints/ folder, which only its "
                "training writes; choose another --out"
            )
        self.created = not self.path.exists()
        # The folders above it that this run creates for a nested --out: removed again with it when unused.
        self.created_parents = [p for p in self.path.absolute().parents if not p.exists() and not p.is_symlink()]
        self.was_empty = self.created or not any(self.path.iterdir())
        self._lock_fd: int | None = None
        resume = resume or restart
        if not resume:
            self._refuse_if_taken()  # before writing anything into a folder that is not ours
        try:
            make_dirs(self.path / "checkpoints", within=self.path)  # a checkpoints/ symlinked elsewhere is refused
            self._lock()
        except UnsafeFileError as err:  # a link out, a special file, or a file where a folder goes
            self.discard_if_unused()
            way = "fix that and resume again" if resume else "choose another with --out DIR"
            raise UnsafeFileError(f"cannot write the run folder {str(self.path)!r}: {err}; {way}") from None
        except OSError as err:
            self.discard_if_unused()
            if err.errno in ENVIRONMENT_ERRNOS:
                raise  # a full or read-only disk, or no permission: the CLI says so in one line, exit 1
            way = "fix that and resume again" if resume else "choose another with --out DIR"
            raise CnnlabError(f"cannot write the run folder {str(self.path)!r}: {err.strerror}; {way}") from None
        if not resume:
            self._refuse_if_taken()  # again under the lock: another run may have started in between

    def _refuse_if_taken(self) -> None:
        if not self.path.exists():
            return
        mine: set[str] = {LOCK_FILE, "checkpoints"} if self._lock_fd is not None else set()
        entries = [
            p.name
            for p in self.path.iterdir()
            if p.name not in mine and not (p.name == "checkpoints" and not any(p.iterdir()))
        ]
        if entries:
            self.close()
            present = [name for name in RUN_FILES if name in entries]
            what = f"already holds a run ({', '.join(present)})" if present else "exists and is not empty"
            hint = ""
            if present and (self.path / "checkpoints" / "last.pt").is_file():
                hint = f"continue it with --resume {self.path}, or "
            elif present:  # stopped before its first checkpoint: --resume has nothing to continue from
                hint = (
                    f"it stopped before its first checkpoint: start it again in place with the same options and "
                    f"--resume auto --out {self.path}, or delete it, or "
                )
            raise CnnlabError(f"{str(self.path)!r} {what}; {hint}choose another --out")

    def _lock(self) -> None:
        lock = self.path / LOCK_FILE
        # O_NOFOLLOW: a .lock planted as a (dangling) symlink must not create or open a file elsewhere;
        # O_NONBLOCK: a FIFO planted as .lock must not block the open; fstat then refuses anything but a file.
        try:
            fd = os.open(
                lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o644
            )
        except OSError as err:
            if lock.is_symlink():
                raise UnsafeFileError(
                    f"{str(lock)!r} is a symbolic link; remove it (cnnlab follows no links in a run folder)"
                ) from None
            raise err
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeFileError(f"{str(lock)!r} is not a regular file; remove it")
        self._lock_fd = fd
        if fcntl is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self._lock_fd = None
            raise CnnlabError(
                f"{str(self.path)!r} is in use by another cnnlab process (its training holds {LOCK_FILE}); "
                "wait for it to finish, or choose another --out"
            ) from None

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock; the empty .lock file stays (deleting it races a new locker)
            self._lock_fd = None

    def discard_if_unused(self) -> None:
        """After a failure before the first checkpoint, leave no trace: remove what this run put in a folder
        that was new or empty. A folder that held anything before is never touched."""
        if not self.was_empty or any((self.path / "checkpoints").glob("*.pt")):
            return
        self.close()
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            for parent in self.created_parents:  # nearest first; a parent something else wrote into stays
                try:
                    parent.rmdir()
                except OSError:
                    break
        elif self.path.is_dir():
            for entry in self.path.iterdir():
                # rmtree never follows a symlink; a link itself is only unlinked
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() and not entry.is_symlink() else entry.unlink(
                    missing_ok=True
                )


def provenance(device: str, argv: list[str] | None) -> dict[str, Any]:
    import datetime as _dt

    import torch

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


class RunWriter:
    """Everything a run prints and writes into its folder; a silent no-op where `folder` is None (ranks > 0)."""

    def __init__(self, folder: RunFolder | None):
        self.folder = folder
        self.enabled = folder is not None
        self._metrics: TextIO | None = None
        self._steps: TextIO | None = None
        self.tensorboard: TensorBoardLogger | None = None

    @property
    def path(self) -> Path | None:
        return self.folder.path if self.folder else None

    def say(self, message: str) -> None:
        if self.enabled:
            print(message, flush=True)

    def keep_model_source(self, name: str, source: bytes) -> None:
        """RUN/model/<name>: the copy of your own model's source that reopening the run executes."""
        if self.path is not None:
            make_dirs(self.path / "model", within=self.path)
            write_bytes_atomic(self.path / "model" / name, source, within=self.path)

    def start(
        self, config_dict: dict[str, Any], meta: dict[str, Any], resume_after_epoch: int | None, tensorboard: bool
    ) -> list[dict[str, Any]]:
        """config.json, metrics.csv and steps.csv (rows past the resumed checkpoint dropped); returns the history kept."""
        path = self.path
        if path is None:  # not rank 0: nothing is written
            return []
        history: list[dict[str, Any]] = []
        kept_steps: list[dict[str, Any]] = []
        if resume_after_epoch is not None:
            # Read before anything is written, so an unreadable file stops the resume with the folder untouched.
            # Rows written after the checkpoint we resume from would be repeated: drop them.
            history = _rows_up_to(read_metrics(path / "metrics.csv", path), resume_after_epoch)
            kept_steps = _rows_up_to(read_metrics(path / "steps.csv", path), resume_after_epoch)
        write_json(path / "config.json", {"config": config_dict, **meta}, within=path)
        self._columns = METRIC_COLUMNS + (VAL_COLUMNS if config_dict.get("val_split") else [])
        _write_rows(path / "metrics.csv", self._columns, history, path)
        _write_rows(path / "steps.csv", STEP_COLUMNS, kept_steps, path)
        self._metrics = open_append(path / "metrics.csv")
        self._steps = open_append(path / "steps.csv")
        if tensorboard:
            make_dirs(path / "tensorboard", within=path)  # the event writer follows no link out
            # here: only runs that log pay for the optional tensorboard extra
            from cnnlab.training.tensorboard import TensorBoardLogger

            self.tensorboard = TensorBoardLogger(
                path, config_dict, purge_step=resume_after_epoch + 1 if resume_after_epoch is not None else None
            )
        return history

    def epoch_row(self, row: dict[str, Any]) -> None:
        """metrics.csv: appended, flushed and fsynced, so a crashed run keeps its history."""
        if self._metrics is not None:
            self._metrics.write(_csv_line(row, self._columns))
            self._metrics.flush()
            os.fsync(self._metrics.fileno())

    def step_row(self, row: dict[str, Any]) -> None:
        """steps.csv: flushed (not fsynced: it is for live curves, and a lost tail costs nothing)."""
        if self._steps is not None:
            self._steps.write(_csv_line(row, STEP_COLUMNS))
            self._steps.flush()

    def checkpoint(self, name: str, state: dict[str, Any], keep: str | None = None) -> None:
        """checkpoints/<name>, atomically; with `keep`, an epoch-boundary last.pt is also kept as epoch-NNN.pt
        (all of them, or the newest `keep`)."""
        path = self.path
        if path is None:  # not rank 0
            return
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        folder = path / "checkpoints"
        write_bytes_atomic(folder / name, buffer.getvalue(), within=path)
        if keep and name == "last.pt" and state["step"] == 0:
            write_bytes_atomic(folder / f"epoch-{state['epoch']:03d}.pt", buffer.getvalue(), within=path)
            if keep != "all":
                for old in sorted(folder.glob("epoch-[0-9][0-9][0-9]*.pt"))[: -int(keep)]:
                    old.unlink()

    def finish(self, summary: dict[str, Any], history, final_eval, model, test_batches, classes, config) -> None:
        """summary.json, the figures, and the closing line."""
        path = self.path
        if path is None:  # not rank 0
            return
        write_json(path / "summary.json", summary, within=path)
        if final_eval is not None:
            from cnnlab.figures.run import write_run_figures  # matplotlib: imported only when drawing

            with confined(path):
                write_run_figures(path, history, final_eval, model, test_batches, classes, config)
        acc, best = summary["final_test_acc"], summary["best_test_acc"]
        self.say(
            f"done: test accuracy {acc:.2%} (best {best:.2%} at epoch {summary['best_epoch']}); run folder {self.path}"
            if acc is not None
            else f"done; run folder {self.path}"
        )

    def close(self) -> None:
        for f in (self._metrics, self._steps):
            if f is not None:
                f.close()
        self._metrics = self._steps = None
        if self.tensorboard is not None:
            self.tensorboard.close()  # flush events of interrupted runs too
            self.tensorboard = None


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


def _csv_line(row: dict[str, Any], columns: list[str]) -> str:
    return ",".join(_fmt(row.get(c)) for c in columns) + "\n"


def _rows_up_to(rows: list[dict[str, Any]], epoch: int) -> list[dict[str, Any]]:
    return [r for r in rows if isinstance(r.get("epoch"), int) and r["epoch"] <= epoch]


def _write_rows(path: Path, columns: list[str], rows: list[dict[str, Any]], within: Path) -> None:
    write_text_atomic(path, ",".join(columns) + "\n" + "".join(_csv_line(r, columns) for r in rows), within)


class StepClock:
    """When to report progress within an epoch: every ~10% of it, or every 30 s, whichever comes first."""

    def __init__(self, steps_per_epoch: int, seconds: float = 30.0):
        self.every = max(1, -(-steps_per_epoch // 10))  # ceil: at most 10 reports an epoch
        self.steps_per_epoch = steps_per_epoch
        self.seconds = seconds
        self.last = time.perf_counter()

    def due(self, step: int) -> bool:
        now = time.perf_counter()
        if (step + 1) % self.every == 0 or step + 1 == self.steps_per_epoch or now - self.last >= self.seconds:
            self.last = now
            return True
        return False


__all__ = ["RunFolder", "RunWriter", "StepClock", "default_run_dir", "provenance"]
