"""A run folder belongs to its run: nothing a user already had is overwritten, and every refusal is one line."""

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.runfolder.checkpoint import load_checkpoint, save_atomic
from cnnlab.runfolder.layout import is_locked
from cnnlab.training import train
from cnnlab.training.rundir import RunFolder

QUICK = dict(
    model="mlp-tiny",
    dataset="mnist-sample",
    recipe="none",
    epochs=2,
    batch_size=64,
    limit_train=256,
    limit_test=100,
    progress=False,
)
QUICK_FLAGS = [
    "--dataset",
    "mnist-sample",
    "--recipe",
    "none",
    "--batch-size",
    "64",
    "--limit-train",
    "256",
    "--limit-test",
    "100",
    "--no-progress",
]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def error_of(capsys, argv) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnnlab: ") and "Traceback" not in err, err
    return code, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-epoch run; tests copy it before changing anything."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    train(out=str(folder), **QUICK)
    return folder


@pytest.fixture
def run(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


@pytest.mark.slow
def test_repeating_a_run_from_its_config_never_touches_it(run, tmp_path, capsys, monkeypatch):
    before = snapshot(run)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", str(run / "config.json"), "--epochs", "1"]) == 0
    assert snapshot(run) == before
    repeats = [p for p in (tmp_path / "runs").iterdir()]
    assert len(repeats) == 1 and (repeats[0] / "summary.json").is_file()
    assert json.loads((repeats[0] / "config.json").read_text())["config"]["model"] == "mlp-tiny"


def test_out_onto_an_existing_run_is_refused(run, capsys):
    before = snapshot(run)
    code, err = error_of(capsys, ["train", "convnet", *QUICK_FLAGS, "--out", str(run)])
    assert code == 2 and "already holds a run" in err and "--resume" in err
    assert snapshot(run) == before


def test_out_onto_a_folder_of_other_files_is_refused(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    code, err = error_of(capsys, ["train", "mlp-tiny", *QUICK_FLAGS, "--out", str(folder)])
    assert code == 2 and "not empty" in err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_an_empty_existing_folder_is_accepted(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    train(out=str(folder), **{**QUICK, "epochs": 1})
    assert (folder / "summary.json").is_file()


def test_a_second_writer_fails_at_once(run, capsys):
    holder = RunFolder(run, resume=True)  # as a training in progress holds it
    try:
        assert is_locked(run)
        before = snapshot(run)
        started = time.perf_counter()
        code, err = error_of(capsys, ["train", "--resume", str(run), "--epochs", "3"])
        assert code == 2 and "in use by another cnnlab process" in err
        assert time.perf_counter() - started < 10 and snapshot(run) == before
    finally:
        holder.close()
    assert not is_locked(run)


@pytest.mark.slow
def test_two_trainings_on_one_folder_in_two_processes(tmp_path):
    folder = tmp_path / "shared"
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "convnet",
        "--dataset",
        "mnist-sample",
        "--recipe",
        "none",
        "--epochs",
        "30",
        "--no-progress",
        "--out",
        str(folder),
    ]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (folder / "config.json").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert is_locked(folder)
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and second.stderr.count("\n") == 1
        assert "already holds a run" in second.stderr or "in use" in second.stderr
        resumed = subprocess.run(
            [sys.executable, "-m", "cnnlab", "train", "--resume", str(folder)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert resumed.returncode == 2 and "in use by another cnnlab process" in resumed.stderr
    finally:
        first.terminate()
        first.wait(timeout=60)


@pytest.mark.slow
def test_a_moved_run_resumes_in_its_new_place_from_another_directory(finished, tmp_path, capsys, monkeypatch):
    old, new = tmp_path / "old", tmp_path / "elsewhere" / "moved"
    shutil.copytree(finished, old)
    new.parent.mkdir()
    old.rename(new)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert main(["train", "--resume", "../elsewhere/moved", "--epochs", "3"]) == 0
    assert not old.exists() and list((tmp_path / "cwd").iterdir()) == []
    rows = (new / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3]
    assert json.loads((new / "summary.json").read_text())["epochs"] == 3


@pytest.mark.slow
def test_a_relative_run_resumed_from_another_directory_stays_whole(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    train(out="runs/rel", **{**QUICK, "epochs": 1})
    monkeypatch.chdir(tmp_path / "b")
    assert main(["train", "--resume", "../a/runs/rel", "--epochs", "2"]) == 0
    assert list((tmp_path / "b").iterdir()) == []
    assert load_checkpoint(tmp_path / "a" / "runs" / "rel")["epoch"] == 2


@pytest.mark.slow
def test_a_crafted_run_dir_inside_a_checkpoint_decides_nothing(run, tmp_path, capsys):
    target = tmp_path / "victim"
    target.mkdir()
    (target / "metrics.csv").write_text("precious\n")
    for name in ("last.pt", "best.pt"):
        checkpoint = torch.load(run / "checkpoints" / name, weights_only=True)
        checkpoint["run_dir"] = str(target)
        save_atomic(checkpoint, run / "checkpoints" / name)
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert main(["eval", str(run)]) == 0
    capsys.readouterr()
    assert snapshot(target) == {"metrics.csv": hashlib.sha256(b"precious\n").hexdigest()}
    assert (run / "eval").is_dir() and len((run / "metrics.csv").read_text().splitlines()) == 4


def test_resume_from_best_or_an_epoch_checkpoint_is_refused(run, capsys):
    before = snapshot(run)
    code, err = error_of(capsys, ["train", "--resume", str(run / "checkpoints" / "best.pt"), "--epochs", "3"])
    assert code == 2 and "--init-from" in err and "last.pt" in err
    assert snapshot(run) == before


def test_resume_with_out_is_refused(run, tmp_path, capsys):
    before = snapshot(run)
    code, err = error_of(capsys, ["train", "--resume", str(run), "--epochs", "3", "--out", str(tmp_path / "x")])
    assert code == 2 and "cannot move it" in err
    assert snapshot(run) == before and not (tmp_path / "x").exists()
    with pytest.raises(Exception, match="cannot move it"):
        train(resume=run, epochs=3, out=str(tmp_path / "x"))


def test_resume_with_a_changed_limit_train_is_refused(run, capsys):
    before = snapshot(run)
    code, err = error_of(capsys, ["train", "--resume", str(run), "--epochs", "3", "--limit-train", "128"])
    assert code == 2 and "--limit-train 256, not 128" in err
    assert snapshot(run) == before


@pytest.mark.slow
def test_init_from_starts_a_new_run_from_the_weights(run, tmp_path):
    before = snapshot(run)
    source = load_checkpoint(run, "best.pt")
    result = train(init_from=str(run), out=str(tmp_path / "new"), **{**QUICK, "epochs": 1, "lr": 1e-12})
    assert snapshot(run) == before
    for name, tensor in result.model.state_dict().items():
        assert torch.allclose(tensor.cpu(), source["model"][name], atol=1e-6), name
    assert result.summary["final_test_acc"] == pytest.approx(source["best_acc"], abs=0.02)


def test_init_from_another_model_is_refused(run, tmp_path, capsys):
    code, err = error_of(
        capsys, ["train", "convnet", *QUICK_FLAGS, "--init-from", str(run), "--out", str(tmp_path / "new")]
    )
    assert code == 2 and "model='mlp-tiny'" in err
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "keep,expected",
    [("all", ["epoch-001.pt", "epoch-002.pt", "epoch-003.pt"]), ("2", ["epoch-002.pt", "epoch-003.pt"])],
)
def test_keep_checkpoints(tmp_path, keep, expected):
    train(out=str(tmp_path / "r"), keep_checkpoints=keep, **{**QUICK, "epochs": 3})
    kept = sorted(p.name for p in (tmp_path / "r" / "checkpoints").glob("epoch-*.pt"))
    assert kept == expected
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / expected[-1])["epoch"] == 3


def test_a_run_that_fails_before_its_first_step_leaves_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_DIRS", str(tmp_path / "none"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    empty = tmp_path / "data"
    empty.mkdir()
    code, err = error_of(
        capsys, ["train", "convnet", "--dataset", "mnist", "--data-dir", str(empty), "--out", str(tmp_path / "r")]
    )
    assert code == 2 and "not found" in err
    assert not (tmp_path / "r").exists()


def test_export_never_writes_into_checkpoints_or_over_a_file(run, capsys):
    before = snapshot(run)
    code, err = error_of(capsys, ["export", str(run), "-o", str(run / "checkpoints" / "last.pt")])
    assert code == 2 and "checkpoints/" in err
    (run / "export").mkdir()
    (run / "export" / "model.pt").write_bytes(b"mine")
    code, err = error_of(capsys, ["export", str(run), "--format", "torchscript"])
    assert code == 2 and "--overwrite" in err
    assert (run / "export" / "model.pt").read_bytes() == b"mine"
    assert {k: v for k, v in snapshot(run).items() if not k.startswith("export")} == before
    assert main(["export", str(run), "--format", "torchscript", "--overwrite"]) == 0
    assert (run / "export" / "model.pt").read_bytes() != b"mine"


def test_eval_and_report_refuse_to_replace_a_file_without_overwrite(run, tmp_path, capsys):
    target = tmp_path / "mine.png"
    target.write_bytes(b"mine")
    code, err = error_of(capsys, ["eval", str(run), "-o", str(target)])
    assert code == 2 and "--overwrite" in err and target.read_bytes() == b"mine"
    assert main(["eval", str(run), "-o", str(target), "--overwrite"]) == 0
    assert target.read_bytes()[:4] == b"\x89PNG"
    page = tmp_path / "page.html"
    page.write_text("mine")
    capsys.readouterr()
    code, err = error_of(capsys, ["report", str(run), "-o", str(page)])
    assert code == 2 and page.read_text() == "mine"


def test_inspect_refuses_checkpoints_and_replaces_only_with_overwrite(run, capsys):
    code, err = error_of(capsys, ["inspect", str(run), "filters", "-o", str(run / "checkpoints")])
    assert code == 2 and "checkpoints/" in err
    assert main(["inspect", str(run), "filters"]) == 0
    capsys.readouterr()
    code, err = error_of(capsys, ["inspect", str(run), "filters"])
    assert code == 2 and "--overwrite" in err
    assert main(["inspect", str(run), "filters", "--overwrite"]) == 0


@pytest.mark.slow
def test_an_experiment_folder_is_not_taken_over_by_another(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    argv = [
        "sweep",
        "--models",
        "mlp-tiny",
        "--dataset",
        "mnist-sample",
        "--epochs",
        "1",
        "--limit-train",
        "128",
        "--limit-test",
        "50",
        "-o",
        str(sweep),
    ]
    assert main(argv) == 0
    before = snapshot(sweep)
    code, err = error_of(
        capsys,
        [
            "experiment",
            "permutation",
            "--models",
            "mlp-tiny",
            "--dataset",
            "mnist-sample",
            "--seeds",
            "1",
            "--limit-train",
            "128",
            "--limit-test",
            "50",
            "-o",
            str(sweep),
        ],
    )
    assert code == 2 and "another experiment" in err
    code, err = error_of(capsys, [*argv[:-2], "--seeds", "2", "-o", str(sweep)])
    assert code == 2 and "seeds" in err
    assert snapshot(sweep) == before


@pytest.mark.parametrize(
    "text,needle",
    [
        ("epochs: two\n", "epochs must be an integer"),
        ("batch_size: true\n", "batch_size must be an integer"),
        ("lr: .nan\n", "lr must be a finite positive number"),
        ("weight_decay: -1\n", "weight_decay must be a finite number"),
        ("gamma: 0\n", "gamma must be a finite positive number"),
        ("epochs: 1000000000\n", "is more than"),
        ("limit_test: 0\n", "limit_test must be a positive integer"),
        ("augment: 3\n", "augment must be true or false"),
    ],
)
def test_bad_values_in_a_config_file_are_one_line(tmp_path, capsys, text, needle):
    config = tmp_path / "c.yaml"
    config.write_text("model: mlp-tiny\ndataset: mnist-sample\n" + text)
    code, err = error_of(capsys, ["train", "--config", str(config), "--out", str(tmp_path / "r")])
    assert code == 2 and needle in err.replace("--", "").replace("-", "_"), err  # the CLI names flags
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--lr", "nan"], "--lr must be a finite positive number"),
        (["--lr", "inf"], "--lr must be a finite positive number"),
        (["--weight-decay", "-0.1"], "--weight-decay must be a finite number"),
        (["--gamma", "0"], "--gamma must be a finite positive number"),
        (["--limit-test", "0"], "--limit-test must be a positive integer"),
        (["--keep-checkpoints", "some"], "--keep-checkpoints must be 'all' or a positive number"),
        (["--resize", "2048", "--batch-size", "8192", "--model-options", "{}"], "more than this machine's"),
    ],
)
def test_values_that_can_never_work_are_refused_up_front(tmp_path, capsys, flags, needle):
    model = "fast-cnn" if "--resize" not in flags else "nin-single"
    code, err = error_of(capsys, ["train", model, "--dataset", "mnist-sample", *flags, "--out", str(tmp_path / "r")])
    assert code == 2 and needle in err, err
    assert not (tmp_path / "r").exists()


def test_same_request_gives_equal_configs_by_every_route(tmp_path):
    from cnnlab.cli.main import build_parser
    from cnnlab.cli.train import explicit_options
    from cnnlab.runfolder.config_file import load_config_file
    from cnnlab.training import TrainConfig, resolve_config

    request = {"model": "lenet", "dataset": "mnist-sample", "epochs": 1, "lr": 0.05, "out": "x"}
    by_kwargs = resolve_config(request)
    by_config = resolve_config(TrainConfig(**request).given())
    args = build_parser().parse_args(
        ["train", "lenet", "--dataset", "mnist-sample", "--epochs", "1", "--lr", "0.05", "--out", "x"]
    )
    by_cli = resolve_config(explicit_options(args))
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({k: v for k, v in request.items() if k != "out"}))
    by_file = resolve_config({**load_config_file(config_file), "out": "x"})
    assert by_kwargs == by_config == by_cli == by_file
    assert by_kwargs.recipe == "fast" and by_kwargs.lr == 0.05  # the recipe fills in; a given default still wins
    assert resolve_config(by_kwargs.given()) == by_kwargs  # a resolved config resolves to itself
