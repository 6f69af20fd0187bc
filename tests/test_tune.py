"""`cnnlab tune` and the study engine `cnnlab sweep` shares: real SQLite, journal and PostgreSQL storages, worker
processes, killed and interrupted trials, and every bad input as one line with nothing written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from cnnlab.cli.main import main  # noqa: E402
from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.experiments import read_run  # noqa: E402
from cnnlab.experiments.space import parse_space  # noqa: E402
from cnnlab.experiments.studies import Plan, counted, duplicate_retry, superseded  # noqa: E402
from cnnlab.experiments.tune import TuneRunner  # noqa: E402

TINY = [
    "--dataset",
    "mnist-sample",
    "--limit-train",
    "400",
    "--limit-test",
    "100",
    "--epochs",
    "2",
    "--recipe",
    "reference",
]
LR = "lr=log:1e-2..0.3"


def tune_argv(
    out: Path, *extra: str, space=(LR,), trials: int | None = 3, model: str = "mlp-tiny", tiny=TINY
) -> list[str]:
    if "--pruner" not in extra:  # trials run to their end unless a test is about pruning: counts stay exact
        extra = (*extra, "--pruner", "none")
    return [
        "tune",
        model,
        "--space",
        *space,
        *(["--trials", str(trials)] if trials else []),
        *tiny,
        "-o",
        str(out),
        *extra,
    ]


def cnnlab(argv: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def study_of(out: Path, name: str | None = None, storage: str | None = None):
    """The study as plain Optuna (and so optuna-dashboard) opens it: no cnnlab code involved."""
    return optuna.load_study(study_name=name or out.name, storage=storage or f"sqlite:///{out}/study.db")


def states(study) -> dict[int, str]:
    return {t.number: t.state.name for t in study.get_trials(deepcopy=False)}


def error_of(capsys, argv) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnnlab: ") and "Traceback" not in err, err
    return code, err


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def wait_for(condition, timeout: float = 120, what: str = "the condition") -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def epochs_done(run: Path) -> int:
    metrics = run / "metrics.csv"
    return max(0, len(metrics.read_text().splitlines()) - 1) if metrics.is_file() else 0


def check_run_history(run: Path, epochs: int) -> None:
    """A complete run with epochs 1..N, each once: resumed, never restarted over itself or written twice."""
    record = read_run(run)
    assert record.complete, record.reason
    assert [row["epoch"] for row in record.history] == list(range(1, epochs + 1))


# ---- the search space ------------------------------------------------------------------------


def test_space_items_become_typed_distributions():
    space = parse_space(
        [
            "lr=log:1e-3..1",
            "batch_size=64,128,256",
            "weight_decay=0..1e-3",
            "epochs=2..4",
            "model_options.width=1,2",
            "normalize=dataset",
            "normalize=0.5,0.5",
            "augment=true,false",
        ],
        "fast-cnn",
    )
    kinds = {p.name: (p.kind, p.low, p.high, p.log, p.choices) for p in space.params}
    assert kinds["lr"] == ("float", 1e-3, 1.0, True, ())
    assert kinds["batch_size"] == ("categorical", None, None, False, (64, 128, 256))
    assert kinds["weight_decay"] == ("float", 0.0, 1e-3, False, ())
    assert kinds["epochs"] == ("int", 2, 4, False, ())
    assert kinds["model_options.width"][4] == (1, 2)
    assert kinds["normalize"][4] == ("dataset", "0.5,0.5")  # a value with commas: one per item, the key repeated
    assert kinds["augment"][4] == (True, False)
    assert space.texts()[0] == "lr=log:0.001..1"


@pytest.mark.parametrize(
    "item,needle",
    [
        ("lr", "expects KEY=VALUES"),
        ("lr=", "expects KEY=VALUES"),
        ("lrr=0.1,0.2", "unknown option 'lrr' (did you mean 'lr'"),
        ("model_options.widht=1,2", "no option 'widht' (did you mean 'width'"),
        ("lr=log:0..1", "a log range needs LOW > 0"),
        ("lr=1..0.1", "LOW must be below HIGH"),
        ("lr=0.1..fast", "'fast' is not a number"),
        ("batch_size=64,big", "batch_size takes an int value"),
        ("optimizer=sgd..adam", "takes a list of values"),
        ("val_split=100,200", "cannot be searched"),
        ("lr=log:0.1", "log: goes with a range"),
    ],
)
def test_bad_space_items_say_what_is_wrong(item, needle):
    with pytest.raises(CnnlabError, match=None) as caught:
        parse_space([item], "fast-cnn")
    assert needle in str(caught.value)


# ---- which trials count ------------------------------------------------------------------------


def _plan(tmp_path, trials=4) -> Plan:
    return Plan(
        "tune", str(tmp_path), None, "s", {}, job={"model": "mlp-tiny", "space": [LR], "base": {}}, trials=trials
    )


def _trial(study, state, number_of_retried=None, user=None):
    history = [] if number_of_retried is None else [number_of_retried]
    system = {"failed_trial": history[0], "retry_history": history} if history else {}
    study.add_trial(
        optuna.trial.create_trial(
            state=state, value=0.5 if state.name == "COMPLETE" else None, user_attrs=user or {}, system_attrs=system
        )
    )


def test_a_retried_trial_counts_once_and_the_budget_holds(tmp_path):
    S = optuna.trial.TrialState
    study = optuna.create_study(direction="maximize")
    runner = TuneRunner(_plan(tmp_path), lambda m: None)
    _trial(study, S.COMPLETE)  # 0
    _trial(study, S.FAIL)  # 1: its worker died...
    _trial(study, S.RUNNING)  # 2
    _trial(study, S.WAITING, number_of_retried=1)  # 3: ...so it is retried
    trials = study.get_trials()
    assert superseded(trials) == {1} and [t.number for t in counted(trials)] == [0, 2, 3]
    assert runner.budget(trials) == "go"  # the queued retry runs first
    study.tell(2, 0.6)
    _trial(study, S.RUNNING)  # 4: a fresh trial while the retry waits: slot 4 of 4
    trials = study.get_trials()
    assert runner.surplus(trials[4], trials) is None
    _trial(study, S.RUNNING)  # 5: one too many (a worker elsewhere took it): not run
    trials = study.get_trials()
    assert "taken after the study had its 4 trials" in runner.surplus(trials[5], trials)
    # Two workers saw trial 1 die: the second retry of it trains nothing.
    _trial(study, S.WAITING, number_of_retried=1)  # 6
    trials = study.get_trials()
    assert "second retry of trial 1" in duplicate_retry(trials[6], trials)
    _trial(study, S.COMPLETE, user={"not_run": "x"})
    assert [t.number for t in counted(study.get_trials())] == [0, 2, 3, 4, 5, 6]  # 6 is marked not_run when it starts


def test_a_dead_workers_trial_is_failed_and_retried_once_even_on_the_grids_last_point(tmp_path):
    """Reconciling goes to the storage, not through `tell`: a GridSampler must not stop the study (outside any
    optimize loop) when the dead trial held the grid's last point, and two reconcilers retry it once."""
    from cnnlab.experiments.studies import host_name, reconcile

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that is no longer running
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(
        study_name="s", storage=storage, direction="maximize", sampler=optuna.samplers.GridSampler({"lr": [0.1, 0.2]})
    )
    study.optimize(lambda t: t.suggest_categorical("lr", [0.1, 0.2]), n_trials=1)
    trial = study.ask()
    trial.suggest_categorical("lr", [0.1, 0.2])
    trial.set_user_attr("run", "runs/trial-0001")
    trial.set_user_attr("worker", {"host": host_name(), "pid": gone.pid, "start": None})
    plan = Plan("tune", str(tmp_path), None, "s", {}, heartbeat=30)
    messages = []
    reconcile(study, plan, messages.append)
    reconcile(study, plan, messages.append)  # a second worker looking too: nothing more happens
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "WAITING"], messages
    retry = trials[2]
    assert retry.system_attrs["retry_history"] == [1] and retry.user_attrs == {"run": "runs/trial-0001"}
    assert retry.system_attrs["grid_id"] == trials[1].system_attrs["grid_id"] and retry.params == trials[1].params
    assert len(messages) == 1 and "trial 1: its worker" in messages[0] and "retrying it" in messages[0]


# ---- bad input: one line, exit 2 (1 for a storage out of reach), nothing written ----------------------


@pytest.mark.parametrize(
    "space,needle",
    [
        (["lr=log:1e-3"], "log: goes with a range"),
        (["lr=0.1,x"], "lr takes a float value"),
        (["colour=red,blue"], "unknown option 'colour'"),
        (["model_options.width=1,2"], "model 'mlp-tiny' has no option 'width'; it takes no options"),
        (["lr=log:0..1"], "a log range needs LOW > 0"),
        (["momentum=0..1"], "momentum must be in [0, 1)"),
        (["lr=log:1e-3..1", "lr=0.1..0.2"], "lr is given twice"),
    ],
)
def test_bad_space_is_one_line_and_writes_nothing(tmp_path, capsys, space, needle):
    out = tmp_path / "study"
    code, err = error_of(capsys, tune_argv(out, space=space))
    assert code == 2 and needle in err and "--space" in err
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--sampler", "grid"], "--sampler grid needs lists of values"),
        (["--sampler", "bayes"], "unknown --sampler 'bayes'"),
        (["--pruner", "mean"], "unknown --pruner 'mean' (did you mean 'median'"),
        (["--val-split", "0"], "--val-split must be a number of training images"),
        (["--val-split", "400"], "leaves no training images"),
        (["--workers", "0"], "--workers must be a positive integer"),
        (["--time", "-5"], "--time must be a positive number"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(tmp_path, capsys, extra, needle):
    code, err = error_of(capsys, tune_argv(tmp_path / "study", *extra))
    assert code == 2 and needle in err, err
    assert listing(tmp_path) == []


def test_a_search_needs_a_length(tmp_path, capsys):
    code, err = error_of(capsys, tune_argv(tmp_path / "study", trials=None))
    assert code == 2 and "--trials N" in err and listing(tmp_path) == []


def test_an_unreachable_storage_is_exit_1_and_writes_nothing(tmp_path, capsys):
    pytest.importorskip("psycopg2")
    port = _free_port()  # nothing listens there
    code, err = error_of(
        capsys, tune_argv(tmp_path / "study", "--storage", f"postgresql://cnnlab:s3cret@127.0.0.1:{port}/db")
    )
    assert code == 1 and "cannot reach the study storage" in err and "s3cret" not in err, err
    assert listing(tmp_path) == []
    code, err = error_of(capsys, tune_argv(tmp_path / "study", "--storage", "nosuchdb://x/y"))
    assert code == 2 and "--storage" in err and listing(tmp_path) == []
    code, err = error_of(
        capsys, tune_argv(tmp_path / "study", "--storage", "sqlite:///" + str(tmp_path / "no" / "x.db"))
    )
    assert code == 1 and "cannot reach" in err and listing(tmp_path) == []


def test_a_folder_holding_something_else_is_refused(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = error_of(capsys, tune_argv(out))
    assert code == 2 and "is not an experiment folder" in err
    assert listing(tmp_path) == ["study", "study/notes.txt"]


@pytest.mark.slow
def test_two_searches_cannot_share_a_study(tmp_path, capsys):
    """The same folder, or the same study in a shared storage, for another search: refused, nothing changed."""
    out = tmp_path / "study"
    assert main(tune_argv(out, "--time", "0.001", trials=None)) == 0  # creates the study; no trial has time to start
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, err = error_of(capsys, tune_argv(out, space=["lr=log:1e-3..1e-2"]))
    assert code == 2 and "another experiment" in err
    code, err = error_of(capsys, tune_argv(out, "--epochs", "3"))
    assert code == 2 and "another experiment" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # Two folders (two machines) pointed at one study in a shared journal file: the second is another search.
    journal = tmp_path / "shared.journal"
    assert (
        main(tune_argv(tmp_path / "a", "--storage", str(journal), "--study-name", "s", "--time", "0.001", trials=None))
        == 0
    )
    capsys.readouterr()
    code, err = error_of(
        capsys, tune_argv(tmp_path / "b", "--storage", str(journal), "--study-name", "s", space=["lr=0.1,0.2"])
    )
    assert code == 2 and "study 's' in" in err and "another search" in err
    assert not (tmp_path / "b").exists()


def test_a_sweep_folder_is_not_a_study(tmp_path, capsys):
    from cnnlab.experiments.runs import write_experiment_file

    out = tmp_path / "sweep"
    (out / "runs" / "a").mkdir(parents=True)
    (out / "runs" / "a" / "config.json").write_text("{}")
    write_experiment_file(out, {"kind": "sweep", "runs": ["runs/a"], "models": ["mlp-tiny"]})
    code, err = error_of(capsys, tune_argv(out))
    assert code == 2 and "holds another experiment (sweep" in err


# ---- searching ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_search_on_sqlite_is_a_study_folder_that_continues(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(tune_argv(out, "--sampler-seed", "3", space=(LR, "batch_size=32,64"))) == 0
    printed = capsys.readouterr().out
    assert "best: trial" in printed and "test accuracy of the best trial" in printed
    study = study_of(out)
    assert sorted(states(study).values()) == ["COMPLETE"] * 3
    info = json.loads((out / "experiment.json").read_text())
    assert info["kind"] == "tune" and info["status"] == "complete"
    assert info["runs"] == ["runs/trial-0000", "runs/trial-0001", "runs/trial-0002"]
    assert info["summary_table"]["headers"][:4] == ["trial", "run", "state", "val acc"]
    assert len(info["summary_table"]["rows"]) == 3 and "test accuracy" in info["summary_table"]["caption"]
    assert set(info["figures"]) <= {"search.png", "importances.png", "parallel.png"}
    assert {"search.png", "parallel.png"} <= set(info["figures"]) and (out / "parallel.png").is_file()
    report = out / "report.html"
    assert main(["report", str(out), "-o", str(report)]) == 0
    shown = report.read_text()
    assert "parallel.png" in shown and "search.png" in shown and "trial-0002" in shown  # the study, in the report
    for trial in study.trials:  # every trial is an ordinary run, selected on validation images
        record = read_run(out / trial.user_attrs["run"])
        assert record.complete and record.config["val_split"] == 40
        assert trial.value == record.summary["best_val_acc"] and trial.params["lr"] == record.config["lr"]
        assert list(trial.intermediate_values) == [1, 2]
    best = info["best"]
    assert best["val_acc"] == max(t.value for t in study.trials)
    assert best["test_acc"] == read_run(out / best["run"]).summary["best_test_acc"]
    assert main(["compare", str(out)]) == 0 and "trial-0002" in capsys.readouterr().out
    # The same command again: nothing to do. A larger --trials continues the same study.
    stamp = (out / "runs" / "trial-0000" / "summary.json").stat().st_mtime_ns
    assert main(tune_argv(out, "--sampler-seed", "3", space=(LR, "batch_size=32,64"))) == 0
    assert len(study_of(out).trials) == 3
    assert main(tune_argv(out, "--sampler-seed", "3", space=(LR, "batch_size=32,64"), trials=4)) == 0
    trials = study_of(out).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4 and (out / "runs" / "trial-0003").is_dir()
    assert trials[3].params != trials[0].params  # a continued sampler does not repeat its first suggestions
    assert (out / "runs" / "trial-0000" / "summary.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_a_journal_file_storage(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(tune_argv(out, "--storage", "journal", trials=2)) == 0
    capsys.readouterr()
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    study = optuna.load_study(study_name="study", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"] and not (out / "study.db").exists()


def _queued_search(tmp_path, capsys, epochs: int):
    """Four trials queued in this order: three good learning rates, then a hopeless one (the median pruner starts
    judging after 3 trials, from epoch 2). Returns (study folder, the study, what was printed)."""
    out = tmp_path / "study"
    tiny = [*TINY[:-3], str(epochs), "--recipe", "reference"]
    argv = tune_argv(out, "--pruner", "median", space=["lr=log:1e-6..0.1"], trials=4, tiny=tiny)
    assert main([*argv[: argv.index("--trials")], "--time", "0.001", *argv[argv.index("--trials") + 2 :]]) == 0
    capsys.readouterr()
    for lr in (0.05, 0.06, 0.07, 0.000001):
        study_of(out).enqueue_trial({"lr": lr})
    assert main(argv) == 0
    return out, study_of(out), capsys.readouterr().out


@pytest.mark.slow
def test_pruning_stops_a_lagging_trial_from_its_validation_accuracy(tmp_path, capsys):
    out, study, printed = _queued_search(tmp_path, capsys, epochs=3)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"], printed
    pruned = study.trials[3]
    assert pruned.params["lr"] == 0.000001 and list(pruned.intermediate_values) == [1, 2]
    assert pruned.user_attrs["pruned_at_epoch"] == 2 and "trial 3: pruned after epoch 2" in printed
    record = read_run(out / pruned.user_attrs["run"])  # an ordinary, complete run of the epochs it had
    assert record.complete and len(record.history) == 2
    assert "pruned (epoch 2)" in json.dumps(json.loads((out / "experiment.json").read_text())["summary_table"])


@pytest.mark.slow
def test_the_last_epoch_is_never_pruned(tmp_path, capsys):
    """Stopping after the last epoch saves nothing, and a pruned trial's result would not count: it completes."""
    out, study, printed = _queued_search(tmp_path, capsys, epochs=2)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4, printed
    assert list(study.trials[3].intermediate_values) == [1, 2]


# ---- interruptions, killed workers, several workers ------------------------------------------------

SLOW_TRIALS = ["--dataset", "mnist-sample", "--epochs", "5", "--recipe", "reference", "--batch-size", "16"]


def _running_trial(out: Path):
    """(number, run folder, worker pid) of a trial that finished at least one epoch and saved it (its metrics row
    is written before last.pt: a kill between the two leaves no state to resume)."""
    try:
        trials = study_of(out).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    except Exception:  # noqa: BLE001 - the study is not created yet
        return None
    for trial in trials:
        run = trial.user_attrs.get("run")
        saved = (out / run / "checkpoints" / "last.pt").is_file() if run else False
        if run and saved and epochs_done(out / run) >= 1 and trial.user_attrs.get("worker"):
            return trial.number, out / run, trial.user_attrs["worker"]["pid"]
    return None


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_or_interrupted_search_continues_where_it_stopped(tmp_path, how):
    out = tmp_path / "study"
    argv = tune_argv(out, model="cnn-tiny", space=["lr=log:0.03..0.1"], trials=3, tiny=SLOW_TRIALS)
    proc = cnnlab(argv)
    found = []
    wait_for(lambda: found.append(_running_trial(out)) or found[-1], what="a trial past its first epoch")
    number, run, pid = found[-1]
    assert pid == proc.pid  # one worker: the command itself
    proc.send_signal(how)
    code, _, err = finish(proc)
    if how == signal.SIGINT:  # the checkpoint is saved, the retry queued: one line, 130
        assert code == 130 and err.count("\n") == 1 and "re-run the same command" in err, err
    else:
        assert code == -9
    done_before = epochs_done(run)
    code, printed, err = finish(cnnlab(argv))
    assert code == 0, err
    trials = study_of(out).trials
    assert trials[number].state.name == "FAIL"
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == number)
    assert retry.state.name == "COMPLETE" and retry.user_attrs["run"] == trials[number].user_attrs["run"]
    assert retry.user_attrs["action"] == "resumed" and done_before >= 1
    assert len(counted(trials)) == 3 and all(t.state.name == "COMPLETE" for t in counted(trials))
    runs = [t.user_attrs["run"] for t in counted(trials)]
    assert len(set(runs)) == 3  # a run folder per counted trial, none shared, none overwritten
    for name in runs:
        check_run_history(out / name, 5)
    assert not list((out / "runs").glob("*.incomplete-*"))


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path):
    out = tmp_path / "study"
    code, printed, err = finish(cnnlab(tune_argv(out, "--workers", "2", trials=4)))
    assert code == 0, err
    assert "[worker 1]" in printed and "[worker 2]" in printed
    trials = study_of(out).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3] and all(t.state.name == "COMPLETE" for t in trials)
    hosts = {t.user_attrs["worker"]["pid"] for t in trials}
    assert len(hosts) == 2  # both workers trained
    assert len({t.user_attrs["run"] for t in trials}) == 4
    for trial in trials:
        check_run_history(out / trial.user_attrs["run"], 2)


@pytest.mark.slow
def test_a_failed_trial_in_a_worker_process_is_a_failed_trial_not_a_dead_worker(tmp_path):
    # A worker runs as `python -m cnnlab.experiments.studies`; a second copy of that module as __main__ once let
    # the runner's TrialFailed slip past Optuna's catch= and end the worker with a traceback.
    out = tmp_path / "study"
    tiny = [*TINY[:-4], "--epochs", "1"]
    code, printed, err = finish(
        cnnlab(tune_argv(out, "--workers", "2", space=["lr=log:1e30..1e35"], trials=2, tiny=tiny))
    )
    assert code == 0, printed + err
    assert "Traceback" not in printed + err and "no trial completed" in printed
    trials = study_of(out).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all("loss became nan" in t.user_attrs["error"] for t in trials)
    table = (out / "table.md").read_text()  # the table stays narrow; the reasons follow it in full
    assert "| failed |" in table and table.count("loss became nan") == 2 and "try a lower --lr" in table


@pytest.mark.slow
def test_a_killed_workers_trial_is_retried_by_the_other(tmp_path):
    out = tmp_path / "study"
    argv = tune_argv(out, "--workers", "2", model="cnn-tiny", space=["lr=log:0.03..0.1"], trials=4, tiny=SLOW_TRIALS)
    proc = cnnlab(argv)
    found = []
    wait_for(lambda: found.append(_running_trial(out)) or found[-1], what="a trial past its first epoch")
    number, run, pid = found[-1]
    assert pid != proc.pid
    os.kill(pid, signal.SIGKILL)
    code, printed, err = finish(proc)
    assert code == 0, printed + err
    assert f"trial {number}: its worker" in printed and "retrying it" in printed and "SIGKILL" in printed
    trials = study_of(out).trials
    assert trials[number].state.name == "FAIL"
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == number)
    assert retry.state.name == "COMPLETE" and retry.user_attrs["run"] == trials[number].user_attrs["run"]
    assert retry.user_attrs["worker"]["pid"] != pid
    live = counted(trials)
    assert len(live) == 4 and all(t.state.name == "COMPLETE" for t in live)
    assert len({t.user_attrs["run"] for t in live}) == 4
    for trial in live:
        check_run_history(out / trial.user_attrs["run"], 5)


# ---- PostgreSQL: several machines on one study -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)


@pytest.fixture
def postgres():
    """A PostgreSQL server in a temporary folder on a free port, as a non-root user; its URL."""
    pytest.importorskip("psycopg2")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing; CI must run this test")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        import pwd

        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None:
            pytest.fail("running as root and no postgres/nobody user to run the server as")
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", user, "--"]
    data, port = folder / "data", _free_port()
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(folder / "log"),
            "-w",
            "-o",
            f"-p {port} -h 127.0.0.1 -k {folder}",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.mark.slow
def test_two_machines_on_postgresql_and_a_dead_one_is_found_by_its_heartbeat(tmp_path, postgres):
    """Two commands with their own study folders (two machines) join one study in PostgreSQL. One machine dies
    mid-trial: the other cannot see its process, so the heartbeat finds it and the trial is retried there,
    in a new run folder of its own."""
    common = ["--storage", postgres, "--study-name", "shared", "--heartbeat", "1"]
    a_out, b_out = tmp_path / "machine-a", tmp_path / "machine-b"
    b = cnnlab(
        tune_argv(b_out, *common, model="cnn-tiny", space=["lr=log:0.03..0.1"], trials=4, tiny=SLOW_TRIALS),
        env={"CNNLAB_HOSTNAME": "machine-b"},
    )
    from cnnlab.experiments.studies import _with_driver

    storage = optuna.storages.RDBStorage(_with_driver(postgres))  # SQLAlchemy 2.1 assumes psycopg 3 otherwise

    def b_running():
        try:
            study = optuna.load_study(study_name="shared", storage=storage)
        except KeyError:
            return None
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            run = t.user_attrs.get("run")
            if run and epochs_done(b_out / run) >= 1:
                return t
        return None

    found = []
    wait_for(lambda: found.append(b_running()) or found[-1], what="machine b's first epoch")
    a = cnnlab(tune_argv(a_out, *common, model="cnn-tiny", space=["lr=log:0.03..0.1"], trials=4, tiny=SLOW_TRIALS))
    time.sleep(1.0)
    b.kill()  # the machine is gone: no checkpoint saved beyond its last epoch, no retry queued by itself
    finish(b)
    code, printed, err = finish(a)
    assert code == 0, printed + err
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.trials
    dead = found[-1].number
    assert trials[dead].state.name == "FAIL"
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == dead)
    assert retry.state.name == "COMPLETE" and retry.user_attrs["worker"]["host"] != "machine-b"
    check_run_history(a_out / retry.user_attrs["run"], 5)  # trained anew on machine a: b's folder is not here
    live = counted(trials)
    assert len(live) == 4 and all(t.state.name == "COMPLETE" for t in live)
    assert len({(t.user_attrs["worker"]["host"], t.user_attrs["run"]) for t in live}) == 4
    # Continuing on machine b finds the study complete and trains nothing.
    code, printed, err = finish(
        cnnlab(tune_argv(b_out, *common, model="cnn-tiny", space=["lr=log:0.03..0.1"], trials=4, tiny=SLOW_TRIALS))
    )
    assert code == 0 and len(optuna.load_study(study_name="shared", storage=storage).trials) == len(trials)


@pytest.mark.slow
def test_two_machines_share_a_journal_file_on_a_shared_folder(tmp_path):
    """The same command on two machines, each with its own study folder, joined by one journal file on a shared
    file system: the study's budget is split between them, no trial twice, every run complete on its machine."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = tmp_path / "shared" / "study.journal"
    journal.parent.mkdir()
    common = ["--storage", str(journal), "--study-name", "shared"]
    machines = {
        host: cnnlab(tune_argv(tmp_path / host, *common, trials=6), env={"CNNLAB_HOSTNAME": host})
        for host in ("machine-a", "machine-b")
    }
    for host, proc in machines.items():
        code, printed, err = finish(proc)
        assert code == 0, host + printed + err
    study = optuna.load_study(study_name="shared", storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(6)) and all(t.state.name == "COMPLETE" for t in trials)
    for trial in trials:
        host = trial.user_attrs["worker"]["host"]
        check_run_history(tmp_path / host / trial.user_attrs["run"], 2)
    assert len({(t.user_attrs["worker"]["host"], t.user_attrs["run"]) for t in trials}) == 6


# ---- cnnlab sweep on the engine ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_on_the_engine_gives_the_same_folders_and_leaderboard(tmp_path, monkeypatch):
    from cnnlab.experiments import run_sweep, studies

    grid = dict(
        seeds=2,
        settings={"lr": [0.01, 0.05]},
        dataset="mnist-sample",
        limit_train=320,
        limit_test=200,
        epochs=1,
        recipe="reference",
        progress=False,
        log=lambda m: None,
    )
    engine = run_sweep(["mlp-tiny"], out=tmp_path / "engine", **grid)
    monkeypatch.setattr(studies, "has_optuna", lambda: False)  # the sequential loop, as sweeps ran before
    plain = run_sweep(["mlp-tiny"], out=tmp_path / "plain", **grid)
    monkeypatch.undo()
    assert [r.name for r in engine.records] == [r.name for r in plain.records]
    assert engine.actions == plain.actions == ["trained"] * 4
    columns = ("run", "best_test_acc", "final_test_acc", "params")
    assert [[row[c] for c in columns] for row in engine.board.rows] == [
        [row[c] for c in columns] for row in plain.board.rows
    ]
    for name in ("experiment.json", "results.csv", "table.md", "compare.png"):
        assert (tmp_path / "engine" / name).is_file()
    info = json.loads((tmp_path / "engine" / "experiment.json").read_text())
    assert info["runs"] == json.loads((tmp_path / "plain" / "experiment.json").read_text())["runs"]
    trials = study_of(tmp_path / "engine", name="engine").trials
    assert [t.params for t in trials] == [
        {"model": "mlp-tiny", "lr": lr, "seed": s} for lr in (0.01, 0.05) for s in (0, 1)
    ]
    # Run again with two workers: everything is complete, nothing is queued or trained.
    again = run_sweep(["mlp-tiny"], out=tmp_path / "engine", workers=2, **grid)
    assert again.actions == ["skipped"] * 4 and len(study_of(tmp_path / "engine", name="engine").trials) == 4


@pytest.mark.slow
def test_a_sweep_with_two_workers_keeps_its_layout(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [
        "sweep",
        "--models",
        "mlp-tiny",
        "--seeds",
        "2",
        "--set",
        "lr=0.01,0.05",
        "--dataset",
        "mnist-sample",
        "--epochs",
        "1",
        "--recipe",
        "reference",
        "--limit-train",
        "320",
        "--limit-test",
        "200",
        "-o",
        str(out),
        "--workers",
        "2",
    ]
    code, printed, err = finish(cnnlab(argv))
    assert code == 0, err
    assert "4 trained, 0 resumed, 0 already complete" in printed and "[worker 2]" in printed
    names = sorted(p.name for p in (out / "runs").iterdir())
    assert names == sorted(f"mlp-tiny-lr={lr}-seed{s}" for lr in (0.01, 0.05) for s in (0, 1))
    assert all(read_run(out / "runs" / n).complete for n in names)
    pids = {t.user_attrs["worker"]["pid"] for t in study_of(out, name="sweep").trials}
    assert len(pids) == 2
