"""The study engine of `cnnlab tune` and `cnnlab sweep`: an Optuna study whose trials are ordinary run folders.

A study lives in a storage (by default `STUDY/study.db`, SQLite, in the study folder itself; or a journal file,
or a database server named by URL), so any number of worker processes, here or on other machines, share it:
each asks the study for a trial, trains it into its own run folder, and tells the study the result.

Fault tolerance, in the storage's own terms:

- a trial running in a process that died is failed and retried exactly once per death: found at once when the
  process ran on this machine (its pid is gone), after the heartbeat's grace period otherwise (Optuna's
  heartbeat for database storages, a heartbeat kept in the trial's attributes for journal files). Its retry is
  a WAITING trial with the same parameters and the same run folder, which the next worker resumes from its
  last.pt (or, when it died before its first checkpoint, trains anew after moving the remains aside);
- Ctrl-C (or SIGTERM) saves the running trial's checkpoint and queues its retry, so re-running the command
  continues it;
- a failed trial that was retried is never counted (its retry is); `retry_history` links them, as Optuna's
  RetryHeartbeatStaleTrialCallback does;
- workers on one machine take trials under a file lock, so a budget of N trials gives exactly N; a worker on
  another machine that took one too many marks it `not_run` at once (it trains nothing, counts for nothing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

STUDY_DB = "study.db"
STUDY_JOURNAL = "study.journal"
LOCK_NAME = ".study.lock"
MAX_RETRIES = 3  # a trial whose process dies this many times (out of memory, say) stays failed
POLL_SECONDS = 2.0
GO, WAIT, DONE = "go", "wait", "done"
RUNNERS = {"tune": "cnnlab.experiments.tune", "sweep": "cnnlab.experiments.sweep"}  # module with make_runner(plan, log)


class StorageUnreachable(CnnlabError):
    """The study's storage cannot be reached (a database server down, a wrong host): the environment, exit 1."""

    exit_code = 1


class TrialFailed(Exception):
    """The trial itself failed (diverged, an impossible combination): recorded as FAIL, and the search goes on."""


class NotRun(Exception):
    """A trial taken beyond the budget, or a duplicate retry: marked not_run, trains nothing, counts for nothing."""


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise CnnlabError("this needs Optuna: pip install 'cnnlab[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # cnnlab says what happens to each trial itself
    import warnings

    # Heartbeats and fail_stale_trials are marked experimental (since Optuna 2.9): said once here, not per trial.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def has_optuna() -> bool:
    import importlib.util

    return importlib.util.find_spec("optuna") is not None


# ---- what every worker needs -----------------------------------------------------------------


@dataclass
class Plan:
    """A study and what its trials train, in JSON: the same for every worker process, here or elsewhere."""

    kind: str  # "tune" | "sweep"
    folder: str  # the study folder (run folders in folder/runs/)
    storage: str | None  # as given: None (embedded SQLite), "journal", a database URL or a journal file path
    study_name: str
    definition: dict[str, Any]  # what the study searches; a study holding another definition is refused
    job: dict[str, Any] = field(default_factory=dict)  # the runner's own settings (space, options, grid points)
    trials: int | None = None  # the study's total of counted trials; None: until `deadline`
    deadline: float | None = None  # unix time after which no trial starts
    sampler: str = "tpe"
    sampler_seed: int | None = None
    pruner: str = "none"
    heartbeat: int = 30  # seconds; a trial without a heartbeat for 3x this is dead
    workers: int = 1
    threads: int | None = None  # torch threads per worker (default: cores // workers)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls(**json.loads(text))


# ---- storage -----------------------------------------------------------------------------------


@dataclass
class Storage:
    spec: str  # how experiment.json names it: "study.db", "study.journal", a URL (password hidden) or a path
    url: str | None = None  # a database URL (SQLAlchemy)
    journal: str | None = None  # a journal file
    embedded: bool = False

    @property
    def shown(self) -> str:
        return self.spec

    def dashboard(self) -> str:
        """The command that opens it in optuna-dashboard."""
        if self.journal:
            return f"optuna-dashboard {self.journal}"
        return f"optuna-dashboard {self.url if self.embedded else self.spec}"


def hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy can read: said as given, minus anything after '@'
        return url.split("@")[-1]


def resolve_storage(spec: str | None, folder: Path) -> Storage:
    """--storage: none (STUDY/study.db), 'journal' (STUDY/study.journal), a database URL, or a journal file path."""
    if spec in (None, "", "sqlite"):
        return Storage(STUDY_DB, url=f"sqlite:///{(folder / STUDY_DB).absolute()}", embedded=True)
    if spec == "journal":
        return Storage(STUDY_JOURNAL, journal=str((folder / STUDY_JOURNAL).absolute()), embedded=True)
    if "://" in spec:
        try:
            from sqlalchemy.engine import make_url

            url = make_url(spec)
        except ImportError:
            raise CnnlabError("a --storage URL needs SQLAlchemy: pip install 'cnnlab[tune]'") from None
        except Exception:  # noqa: BLE001 - sqlalchemy.exc.ArgumentError
            raise CnnlabError(
                f"--storage {hide_password(spec)!r} is not a database URL "
                "(e.g. postgresql://user:password@host/db or sqlite:///path/study.db)"
            ) from None
        if url.drivername.startswith("sqlite") and url.database in (None, "", ":memory:"):
            raise CnnlabError(
                "--storage sqlite needs a file (sqlite:///path/study.db); the study must outlive the process"
            )
        return Storage(hide_password(spec), url=spec)
    return Storage(str(Path(spec).absolute()), journal=str(Path(spec).absolute()))


def open_storage(storage: Storage, heartbeat: int):
    """The Optuna storage; StorageUnreachable (exit 1) when a database cannot be reached, CnnlabError (exit 2)
    for a URL that cannot work (an unknown database kind, a driver that is not installed)."""
    require_optuna()
    if storage.journal:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(storage.journal)
        if not path.parent.is_dir():
            raise CnnlabError(f"--storage {storage.journal}: the folder {str(path.parent)!r} does not exist")
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise StorageUnreachable(
                f"cannot open the study journal {storage.journal}: {err.strerror or err}"
            ) from None
    import inspect

    from optuna.storages import RDBStorage

    assert storage.url is not None
    url = _with_driver(storage.url)
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine["connect_args"] = {"timeout": 120}  # workers wait their turn to write instead of failing
    elif url.startswith(("postgresql", "postgres", "mysql")):
        engine["connect_args"] = {"connect_timeout": 10}
    engine["pool_pre_ping"] = True
    retry: Any = RetryStaleTrial()
    # Optuna 4.9 renamed failed_trial_callback to heartbeat_stale_trial_callback; either works here.
    callback = (
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in inspect.signature(RDBStorage).parameters
        else "failed_trial_callback"
    )
    try:
        return RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=3 * heartbeat, **{callback: retry}
        )
    except ImportError:
        raise CnnlabError(
            f"--storage {storage.shown}: no driver for this database is installed (PostgreSQL: "
            "pip install psycopg2-binary)"
        ) from None
    except Exception as err:  # noqa: BLE001 - sqlalchemy's OperationalError and friends
        reason = _first_line(getattr(err, "orig", None) or err)
        if type(err).__name__ in ("NoSuchModuleError", "ArgumentError"):
            raise CnnlabError(f"--storage {storage.shown}: {reason}") from None
        raise StorageUnreachable(f"cannot reach the study storage {storage.shown}: {reason}") from None


def _with_driver(url: str) -> str:
    """postgresql://... with the driver that is installed: SQLAlchemy 2.1 means psycopg (3) by it, 2.0 psycopg2."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}{sep}{rest}"
    return url


def _first_line(err: BaseException | str) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__).rstrip(".")


def definition_problem(stored: Any, wanted: dict[str, Any]) -> str | None:
    """Why a study's stored definition is another search than `wanted` (None when it is the same)."""
    wanted = json.loads(json.dumps(wanted, default=str))
    if not isinstance(stored, dict):
        return "it was not made by cnnlab"
    for key in sorted(set(stored) | set(wanted)):
        if stored.get(key) != wanted.get(key):
            return f"{key} is {json.dumps(stored.get(key), default=str)[:200]}, not {json.dumps(wanted.get(key))[:200]}"
    return None


def open_study(plan: Plan, storage=None, sampler=None, pruner=None, create: bool = False):
    """The plan's study in its storage (created when `create`), refused if it holds another search."""
    optuna = require_optuna()
    folder = Path(plan.folder)
    where = resolve_storage(plan.storage, folder)
    storage = storage if storage is not None else open_storage(where, plan.heartbeat)
    try:
        if create:
            study = optuna.create_study(
                storage=storage,
                study_name=plan.study_name,
                direction="maximize",
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
        else:
            study = optuna.load_study(storage=storage, study_name=plan.study_name, sampler=sampler, pruner=pruner)
    except KeyError:
        raise CnnlabError(f"no study {plan.study_name!r} in {where.shown}") from None
    except Exception as err:  # noqa: BLE001 - a database that went away between connect and create
        if isinstance(err, CnnlabError):
            raise
        if type(err).__module__.startswith("sqlalchemy"):
            raise StorageUnreachable(
                f"cannot use the study storage {where.shown}: {_first_line(getattr(err, 'orig', None) or err)}"
            ) from None
        raise
    if len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise CnnlabError(
            f"study {plan.study_name!r} in {where.shown} is not a cnnlab {plan.kind} (it minimises); "
            "choose another --study-name"
        )
    stored = study.user_attrs.get("cnnlab")
    if stored is None and create and not study.trials:
        study.set_user_attr("cnnlab", json.loads(json.dumps(plan.definition, default=str)))
        return study
    problem = definition_problem(stored, plan.definition)
    if problem:
        raise CnnlabError(
            f"study {plan.study_name!r} in {where.shown} is another search ({problem}); re-run its own "
            "command to continue it, or choose another --study-name"
        )
    return study


# ---- which trials count --------------------------------------------------------------------------


def superseded(trials) -> set[int]:
    """Numbers of trials that a later trial retries (they count through their retry, never themselves)."""
    return {n for t in trials for n in (t.system_attrs.get("retry_history") or [])}


def counted(trials) -> list:
    """The trials a budget counts: not retried by another, not marked not_run."""
    replaced = superseded(trials)
    return [t for t in trials if t.number not in replaced and "not_run" not in t.user_attrs]


def find_trial(study, number: int):
    """The FrozenTrial of trial `number`, as the storage holds it now."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def duplicate_retry(me, trials) -> str | None:
    """Why `me` is a second retry of the same failed trial (two workers both saw it die), or None."""
    history = me.system_attrs.get("retry_history") or []
    if not history:
        return None
    twin = next(
        (
            t
            for t in trials
            if t.number < me.number and (t.system_attrs.get("retry_history") or [])[-1:] == history[-1:]
        ),
        None,
    )
    return f"a second retry of trial {history[-1]} (trial {twin.number} retries it)" if twin else None


def is_queued(trial) -> bool:
    """Whether a trial was queued with its parameters (a sweep point, a retry) rather than sampled."""
    return "fixed_params" in trial.system_attrs or "retry_history" in trial.system_attrs


# ---- retries ------------------------------------------------------------------------------------


def enqueue_retry(study, trial) -> bool:
    """Queue a retry of `trial` (a FrozenTrial that failed or is failing): same parameters, same run folder.

    The conventions of Optuna's RetryHeartbeatStaleTrialCallback (system attrs failed_trial, retry_history), so
    `RetryHeartbeatStaleTrialCallback.retried_trial_number` reads them too. False when retried too often.
    """
    import optuna

    history = [*(trial.system_attrs.get("retry_history") or []), trial.number]
    if len(history) > MAX_RETRIES:
        return False
    system = {"failed_trial": history[0], "retry_history": history}
    for key in ("fixed_params", "grid_id", "search_space"):  # an enqueued point, a GridSampler's point: the same one
        if key in trial.system_attrs:
            system[key] = trial.system_attrs[key]
    user = {k: v for k, v in trial.user_attrs.items() if k in ("run", "point")}  # never its worker: it is gone
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user,
            system_attrs=system,
        )
    )
    return True


class RetryStaleTrial:
    """The heartbeat's callback for a trial whose worker stopped beating: queue its retry (see `enqueue_retry`)."""

    def __call__(self, study, trial) -> None:
        enqueue_retry(study, trial)

    retried_trial_number = staticmethod(lambda trial: trial.system_attrs.get("failed_trial"))


# ---- which worker runs a trial, and whether it is alive ---------------------------------------------


def host_name() -> str:
    # CNNLAB_HOSTNAME: a worker that says it runs elsewhere (the tests use it to reach the heartbeat's path).
    return os.environ.get("CNNLAB_HOSTNAME") or socket.gethostname()


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process (ticks since boot), and whether it is a zombie: 'Z' for one."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return "Z" if fields[0] in ("Z", "X") else fields[19]


def worker_identity() -> dict[str, Any]:
    return {"host": host_name(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def is_alive(worker: dict[str, Any]) -> bool:
    """Whether the process that took a trial on this machine still runs (not a later one with its pid)."""
    pid = worker.get("pid")
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _process_start(pid)
    if start == "Z":
        return False
    return start is None or worker.get("start") in (None, start)


def reconcile(study, plan: Plan, log: Callable[[str], None]) -> None:
    """Fail the running trials whose worker is dead, and queue their retries.

    This machine's dead workers are found by pid at once; elsewhere, a database storage's heartbeat finds them
    (Optuna's fail_stale_trials), and a journal file's by the heartbeat each worker keeps in its trial.
    """
    import warnings

    import optuna

    with contextlib.suppress(Exception), warnings.catch_warnings():  # a storage without heartbeats does nothing
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # experimental since Optuna 2.9
        optuna.storages.fail_stale_trials(study)
    host, now = host_name(), time.time()
    journal = resolve_storage(plan.storage, Path(plan.folder)).journal is not None
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if not isinstance(worker, dict):
            continue  # just taken: its worker has not said who it is yet
        beat = trial.user_attrs.get("heartbeat")
        dead = (worker.get("host") == host and not is_alive(worker)) or (
            journal and isinstance(beat, (int, float)) and now - beat > 3 * plan.heartbeat
        )
        if not dead:
            continue
        # Straight to the storage, as Optuna's own fail_stale_trials does: `tell` would run the sampler's after_trial
        # (a GridSampler may stop the study there, outside any optimize loop), and only one worker may win this.
        try:
            if not study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        log(
            f"trial {trial.number}: its worker ({worker.get('host')}, pid {worker.get('pid')}) is gone; "
            + (
                "retrying it"
                if enqueue_retry(study, find_trial(study, trial.number))
                else f"not retried again after {MAX_RETRIES} retries"
            )
        )


# ---- one worker ----------------------------------------------------------------------------------


class _AskLock:
    """The study folder's lock around 'is there budget left? then take a trial', for workers on this machine."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _heartbeat_thread(trial, seconds: int) -> tuple[threading.Thread, threading.Event]:
    """A journal file has no heartbeat of its own: the worker keeps one in its trial's attributes."""
    stop = threading.Event()

    def beat():
        while not stop.is_set():
            with contextlib.suppress(Exception):
                trial.set_user_attr("heartbeat", time.time())
            stop.wait(seconds)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    return thread, stop


def sampler_seed(plan: Plan, worker_index: int, trials: int) -> int | None:
    """--sampler-seed, made distinct per worker and per continuation (the trials the study already holds), so a
    re-run or a second worker does not repeat the first one's suggestions; the same history, the same seed."""
    if plan.sampler_seed is None:
        return None
    import numpy as np

    return int(np.random.SeedSequence([plan.sampler_seed, worker_index, trials]).generate_state(1)[0])


def work(plan: Plan, runner, log: Callable[[str], None], worker_index: int = 0) -> None:
    """Run trials until the budget is spent (or the deadline passes): the loop of every worker."""
    import optuna

    folder = Path(plan.folder)
    study = open_study(plan, pruner=runner.pruner())
    study.sampler = runner.sampler(sampler_seed(plan, worker_index, len(study.get_trials(deepcopy=False))))
    journal = resolve_storage(plan.storage, folder).journal is not None
    lock = _AskLock(folder)

    def objective(trial):
        lock.release()  # the trial is taken: the next worker may ask
        trial.set_user_attr("worker", worker_identity())
        beat = _heartbeat_thread(trial, plan.heartbeat) if journal else None
        try:
            trials = study.get_trials(deepcopy=False)
            frozen = next(t for t in trials if t.number == trial.number)
            reason = runner.surplus(frozen, trials)
            if reason:
                trial.set_user_attr("not_run", reason)
                raise NotRun(reason)
            try:
                return runner.run(trial, frozen)
            except TrialFailed as err:
                trial.set_user_attr("error", str(err)[:500])
                raise
            except optuna.TrialPruned:
                raise
            except BaseException:
                # Interrupted (Ctrl-C, SIGTERM: its checkpoint is saved), the machine's trouble (a full disk) or
                # a stop the runner asked for: the retry continues it the next time the command runs.
                if enqueue_retry(study, find_trial(study, trial.number)):
                    run = trial.user_attrs.get("run")
                    log(
                        f"trial {trial.number}: stopped; it is retried"
                        + (f", continuing {run}," if run else "")
                        + " when the command runs again"
                    )
                raise
        finally:
            if beat:
                beat[1].set()

    while True:
        if plan.deadline is not None and time.time() >= plan.deadline:
            log("time is up: no more trials start")
            return
        reconcile(study, plan, log)
        lock.acquire()
        try:
            state = runner.budget(study.get_trials(deepcopy=False))
            if state == DONE:
                return
            if state == WAIT:
                lock.release()
                time.sleep(POLL_SECONDS)
                continue
            study.optimize(objective, n_trials=1, catch=(TrialFailed, NotRun), gc_after_trial=False)
        finally:
            lock.release()
        runner.after_trial(study)


# ---- several workers on this machine --------------------------------------------------------------


def threads_per_worker(plan: Plan) -> int:
    return plan.threads or max(1, (os.cpu_count() or 1) // plan.workers)


def run_workers(plan: Plan, log: Callable[[str], None]) -> list[int]:
    """Start plan.workers worker processes on this study, relay their output line by line, wait for them.

    Each is `python -m cnnlab.experiments.studies INDEX` with the plan on its stdin and torch limited to
    `threads_per_worker` threads. Ctrl-C reaches them through the terminal; SIGTERM to this process is passed
    on. Returns their exit statuses (negative: killed by that signal).
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_worker(plan))}
    procs, relays = [], []
    for index in range(1, plan.workers + 1):
        proc = subprocess.Popen(
            [sys.executable, "-m", "cnnlab.experiments.studies", str(index)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            bufsize=1,
        )
        assert proc.stdin is not None
        proc.stdin.write(plan.to_json())
        proc.stdin.close()
        relay = threading.Thread(target=_relay, args=(proc.stdout, f"[worker {index}] ", log), daemon=True)
        relay.start()
        procs.append(proc)
        relays.append(relay)

    def forward(signum, frame):
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward) if threading.current_thread() is threading.main_thread() else None
    passed_on_at = None  # Ctrl-C at a terminal reaches the workers too: passed on only if they are still running later
    try:
        while any(proc.poll() is None for proc in procs):
            try:
                time.sleep(0.2)
                if passed_on_at is not None and time.time() > passed_on_at:
                    forward(signal.SIGINT, None)  # the signal was this process's alone (kill -INT)
                    passed_on_at = None
            except KeyboardInterrupt:
                if passed_on_at is None:
                    passed_on_at = time.time() + 5  # each worker saves its trial's checkpoint and stops
                else:
                    forward(signal.SIGINT, None)  # a second Ctrl-C: stop now
        codes = [proc.wait() for proc in procs]
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    for relay in relays:
        relay.join(timeout=5)
    for index, code in enumerate(codes, 1):
        if code < 0:
            log(f"worker {index} was killed ({signal.Signals(-code).name}); a trial it was running is retried")
    return codes


def stop_if_interrupted(codes: list[int], folder: str) -> None:
    """After workers that were interrupted (Ctrl-C, SIGTERM): stop as an interrupted command does (130)."""
    if any(code in (130, 143, -signal.SIGINT, -signal.SIGTERM) for code in codes):
        from cnnlab.training.loop import TrainingInterrupted  # here: Optuna, an optional extra, loads on use

        raise TrainingInterrupted(
            f"interrupted; the running trials saved their checkpoints: re-run the same command to continue in {folder}",
            signal.SIGINT,
        )


def _relay(stream, prefix: str, log: Callable[[str], None]) -> None:
    for line in stream:
        log(prefix + line.rstrip("\n"))


def make_runner(plan: Plan, log: Callable[[str], None]):
    import importlib

    return importlib.import_module(RUNNERS[plan.kind]).make_runner(plan, log)


def worker_main(argv: list[str] | None = None) -> int:
    """A worker process: the plan on stdin, its index as the argument; one line and a status on failure."""
    argv = sys.argv[1:] if argv is None else argv
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    index = int(argv[0]) if argv else 0
    try:
        plan = Plan.from_json(sys.stdin.read())
        work(plan, make_runner(plan, print), print, index)
        return 0
    except KeyboardInterrupt:
        print("cnnlab: interrupted", flush=True)
        return 130
    except CnnlabError as err:
        from cnnlab.training.loop import TrainingInterrupted  # here: Optuna, an optional extra, loads on use

        if isinstance(err, TrainingInterrupted):  # not the trainer's "resume with cnnlab train": the study retries it
            print(f"cnnlab: stopped: {str(err).split(':')[0]}; the trial's checkpoint is saved", flush=True)
        else:
            print(f"cnnlab: {err.label}: {err}", flush=True)
        return err.exit_code
    except OSError as err:
        print(f"cnnlab: error: {err.strerror or err}: {err.filename or ''}", flush=True)
        return 1


if __name__ == "__main__":
    # Run as `python -m`, this file is `__main__`, a second copy of the module: its TrialFailed would not be the
    # one the runners raise, and Optuna's catch= would let a failed trial end the worker. Use the real module.
    from cnnlab.experiments.studies import worker_main as _worker_main

    sys.exit(_worker_main())
