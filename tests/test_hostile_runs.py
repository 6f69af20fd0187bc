"""A run folder from someone else: cnnlab writes nothing outside it, reads nothing unbounded from it, never hangs.

Each case plants a link, a FIFO or a hand-edited file in a copy of a real run, runs the command, and checks:
files outside the run byte for byte, the exit code, one line on stderr, and a timeout around anything that
could block. The run is trained once per module (mlp-tiny on 256 images, about a second).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.cli.main import main
from cnnlab.training import train

QUICK = dict(
    model="mlp-tiny",
    dataset="mnist-sample",
    recipe="none",
    epochs=1,
    batch_size=64,
    limit_train=256,
    limit_test=100,
    progress=False,
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64  # enough of a PNG for the report's check of the first bytes


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("cnnlab: "), err
    return lines[0]


def call(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m cnnlab ARGS` in a child with a timeout: a hang fails the test instead of stalling the suite."""
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile") / "run"
    train(out=str(folder), **QUICK)
    return folder


@pytest.fixture
def run(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


@pytest.fixture
def outside(tmp_path) -> Path:
    """A user's file outside the run, which no command may change."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    return notes


# ---- writing: never through a link, never outside the run, atomically ------------------------------------


@pytest.mark.slow
def test_resume_replaces_a_symlinked_figure_instead_of_writing_through_it(run, outside, capsys):
    (run / "curves.png").unlink()
    (run / "curves.png").symlink_to(outside)
    before = digest(outside)
    code, err = call(capsys, ["train", "--resume", str(run), "--epochs", "2"])
    assert code == 0, err
    assert digest(outside) == before
    assert not (run / "curves.png").is_symlink() and (run / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_a_symlinked_checkpoints_folder_is_refused(run, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run / "checkpoints", elsewhere)
    (run / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    before = {p.name: digest(p) for p in elsewhere.iterdir()}
    code, err = call(capsys, ["train", "--resume", str(run), "--epochs", "2"])
    assert code == 2 and "outside" in one_line(err)
    assert {p.name: digest(p) for p in elsewhere.iterdir()} == before


def test_a_dangling_lock_symlink_creates_nothing_elsewhere(run, tmp_path, capsys):
    target = tmp_path / "created-by-cnnlab"
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(target)
    code, err = call(capsys, ["train", "--resume", str(run), "--epochs", "2"])
    assert code == 2 and "symbolic link" in one_line(err)
    assert not target.exists()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "run"])
def test_a_fifo_lock_does_not_hang(run, mode):
    (run / ".lock").unlink(missing_ok=True)
    os.mkfifo(run / ".lock")
    if mode == "auto":
        done = run_cli(
            "train",
            "mlp-tiny",
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
            "--epochs",
            "2",
            "--no-progress",
            "--resume",
            "auto",
            "--out",
            str(run),
        )
    else:
        done = run_cli("train", "--resume", str(run), "--epochs", "2")
    assert done.returncode == 2 and "not a regular file" in one_line(done.stderr)


def test_eval_default_figure_never_leaves_the_run(run, tmp_path, capsys):
    away = tmp_path / "away"
    away.mkdir()
    (run / "eval").symlink_to(away, target_is_directory=True)
    code, err = call(capsys, ["eval", str(run)])
    assert code == 2 and "outside" in one_line(err)
    assert list(away.iterdir()) == []


def test_eval_replaces_a_dangling_figure_link_inside_the_run(run, tmp_path, outside, capsys):
    (run / "eval").mkdir()
    dangling = tmp_path / "would-be-created"
    (run / "eval" / "confusion-mnist-sample.png").symlink_to(dangling)
    code, err = call(capsys, ["eval", str(run)])
    assert code == 0, err
    assert not dangling.exists()
    figure = run / "eval" / "confusion-mnist-sample.png"
    assert not figure.is_symlink() and figure.read_bytes().startswith(b"\x89PNG")
    # With --overwrite, a link to a user's file is replaced, the file itself untouched.
    figure.unlink()
    figure.symlink_to(outside)
    before = digest(outside)
    code, err = call(capsys, ["eval", str(run), "--overwrite"])
    assert code == 0, err
    assert digest(outside) == before and not figure.is_symlink()


def test_inspect_overwrite_never_writes_through_a_link(run, outside, tmp_path, capsys):
    code, err = call(capsys, ["inspect", str(run), "filters"])
    assert code == 0, err
    figure = next((run / "inspect").glob("filters-*.png"))
    figure.unlink()
    figure.symlink_to(outside)
    before = digest(outside)
    code, err = call(capsys, ["inspect", str(run), "filters", "--overwrite"])
    assert code == 0, err
    assert digest(outside) == before and not figure.is_symlink()
    # A symlinked inspect/ folder is refused outright.
    shutil.rmtree(run / "inspect")
    away = tmp_path / "away"
    away.mkdir()
    (run / "inspect").symlink_to(away, target_is_directory=True)
    code, err = call(capsys, ["inspect", str(run), "filters"])
    assert code == 2 and "outside" in one_line(err)
    assert list(away.iterdir()) == []


def test_figures_are_written_atomically(run, monkeypatch):
    """A failure while a figure is drawn leaves the old PNG whole (savefig used to write onto the file itself)."""
    import matplotlib.figure

    from cnnlab.figures.plots import plot_per_class

    before = digest(run / "per_class.png")
    real_savefig = matplotlib.figure.Figure.savefig

    def half_then_fail(self, target, *args, **kwargs):
        real_savefig(self, target, *args, **kwargs)
        if hasattr(target, "truncate"):
            target.truncate(10)
        else:
            Path(target).write_bytes(b"torn")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_then_fail)
    with pytest.raises(OSError):
        plot_per_class([[5, 1], [2, 7]], ["a", "b"], run / "per_class.png")
    assert digest(run / "per_class.png") == before
    assert sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp")) == []


# ---- reading: only regular files inside the folder, bounded, without blocking ------------------------------


def test_report_embeds_no_file_from_outside(run, tmp_path, capsys):
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG + b"SECRET-BYTES")
    import base64

    marker = base64.b64encode(secret.read_bytes()).decode()
    (run / "curves.png").unlink()
    (run / "curves.png").symlink_to(secret)
    (run / "inspect").mkdir()
    (run / "inspect" / "leak.png").symlink_to(secret)
    out = tmp_path / "report.html"
    code, err = call(capsys, ["report", str(run), "-o", str(out)])
    assert code == 0, err
    page = out.read_text()
    assert marker not in page and "symbolic link" in page


@pytest.mark.parametrize("figures", [["../secret.png"], ["ABSOLUTE"], ["notes.png"], ["big.png"]])
def test_report_embeds_only_images_inside_an_experiment(run, tmp_path, capsys, figures):
    import base64

    experiment = tmp_path / "exp"
    experiment.mkdir()
    shutil.move(run, experiment / "run")
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG + b"SECRET")
    (experiment / "notes.png").write_bytes(b"not an image at all")
    with open(experiment / "big.png", "wb") as f:  # sparse: 17 MiB on paper, nothing on disk
        f.write(PNG)
        f.truncate(17 * 2**20)
    figures = [str(secret) if f == "ABSOLUTE" else f for f in figures]
    (experiment / "experiment.json").write_text(json.dumps({"kind": "sweep", "runs": ["run"], "figures": figures}))
    out = tmp_path / "report.html"
    code, err = call(capsys, ["report", str(experiment), "-o", str(out)])
    assert code == 0, err
    page = out.read_text()
    assert base64.b64encode(secret.read_bytes()).decode() not in page
    assert "left out" in page
    assert base64.b64encode((experiment / "notes.png").read_bytes()).decode() not in page


@pytest.mark.slow
@pytest.mark.parametrize("name", ["summary.json", "metrics.csv", "config.json", "steps.csv"])
@pytest.mark.parametrize("command", ["compare", "report"])
def test_fifo_run_files_do_not_hang_compare_or_report(run, tmp_path, name, command):
    (run / name).unlink()
    os.mkfifo(run / name)
    args = [command, str(run)] + (["-o", str(tmp_path / "r.html")] if command == "report" else [])
    done = run_cli(*args, timeout=60)
    if name == "steps.csv":  # compare and report do not read steps.csv: they work as usual
        assert done.returncode == 0, done.stderr
    else:  # listed as not a run; compare then says there is no complete run (exit 1), report reports it
        assert done.returncode in (0, 1, 2), done.stderr
        assert "Traceback" not in done.stderr
        assert "FIFO" in done.stdout + done.stderr or "FIFO" in (tmp_path / "r.html").read_text(errors="replace")


@pytest.mark.slow
def test_fifo_steps_csv_does_not_hang_resume(run):
    (run / "steps.csv").unlink()
    os.mkfifo(run / "steps.csv")
    done = run_cli("train", "--resume", str(run), "--epochs", "2")
    assert done.returncode == 2 and "FIFO" in one_line(done.stderr)


@pytest.mark.slow
def test_run_files_linked_to_dev_zero_are_refused_with_little_memory(run):
    """metrics.csv and summary.json -> /dev/zero: listed as unreadable, in a child limited to 1.5 GB of memory."""
    for name in ("metrics.csv", "summary.json"):
        (run / name).unlink()
        (run / name).symlink_to("/dev/zero")
    code = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
from cnnlab.cli.main import main
sys.exit(main(["compare", {str(run)!r}]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert "symbolic link" in done.stdout + done.stderr


@pytest.mark.parametrize(
    "edit",
    [
        ("summary.json", lambda s: {**s, "final_test_acc": "high"}),
        ("summary.json", lambda s: {**s, "best_test_acc": float("inf")}),
        ("summary.json", lambda s: ["not", "an", "object"]),
        ("metrics.csv", None),
    ],
)
def test_a_hand_edited_run_is_listed_beside_the_leaderboard(run, finished, tmp_path, capsys, edit):
    """compare and report promise that folders which are not runs are listed, never fatal."""
    name, change = edit
    if change is None:
        with open(run / "metrics.csv", "a") as f:
            f.write("2,8,0.1,0.5,0.1,0.5,0.01,1,100,EXTRA\n")
    else:
        summary = json.loads((run / name).read_text())
        (run / name).write_text(json.dumps(change(summary)))
    good = tmp_path / "good"
    shutil.copytree(finished, good)
    code, err = call(capsys, ["compare", str(run), str(good)])
    assert code == 0, err
    code, err = call(capsys, ["report", str(run), str(good), "-o", str(tmp_path / "r.html")])
    assert code == 0, err
    assert "unreadable" in (tmp_path / "r.html").read_text()


def test_resume_of_a_run_with_a_broken_metrics_file_is_one_line_and_touches_nothing(run, capsys):
    with open(run / "metrics.csv", "a") as f:
        f.write("2,8,0.1,0.5,0.1,0.5,0.01,1,100,EXTRA\n")
    before = {p.name: digest(p) for p in run.iterdir() if p.is_file()}
    code, err = call(capsys, ["train", "--resume", str(run), "--epochs", "2"])
    assert code == 2 and "metrics.csv" in one_line(err)
    assert {p.name: digest(p) for p in run.iterdir() if p.is_file()} == before


# ---- one line for every OSError; nothing half-made -----------------------------------------------------------


@pytest.mark.parametrize("case", ["parent-is-file", "dangling-parent", "name-too-long", "loop", "folder"])
@pytest.mark.parametrize(
    "command", ["eval", pytest.param("export", marks=pytest.mark.slow), pytest.param("inspect", marks=pytest.mark.slow)]
)
def test_bad_output_paths_are_one_line(run, tmp_path, capsys, case, command):
    if case == "parent-is-file":
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "x.png"
    elif case == "dangling-parent":
        (tmp_path / "gone").symlink_to(tmp_path / "nowhere" / "deeper")
        target = tmp_path / "gone" / "x.png"
    elif case == "name-too-long":
        target = tmp_path / ("n" * 300 + ".png")
    elif case == "loop":
        (tmp_path / "loop").symlink_to(tmp_path / "loop")
        target = tmp_path / "loop" / "x.png"
    elif command == "inspect":  # its -o is a folder: a file there is what cannot work
        target = tmp_path / "file"
        target.write_text("x")
    else:
        target = tmp_path / ("folder.pt" if command == "export" else "folder.png")
        target.mkdir()
    if command == "export":
        target = target.with_suffix(".pt")
        argv = ["export", str(run), "--format", "torchscript", "-o", str(target)]
    elif command == "inspect":
        argv = ["inspect", str(run), "filters", "-o", str(target)]
    else:
        argv = ["eval", str(run), "-o", str(target)]
    code, err = call(capsys, argv)
    assert code == 2, err
    line = one_line(err)
    if case in ("parent-is-file", "dangling-parent", "loop"):  # what is in the way, not mkdir's "file exists"
        assert "not a folder" in line or "too many levels of symbolic links" in line, line


@pytest.mark.slow
def test_full_disk_is_exit_1_for_report(run, tmp_path, monkeypatch, capsys):
    import errno

    real_fsync = os.fsync

    def fail(fd):  # the disk fills up just as the report itself is written
        if "report.html" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fail)
    out = tmp_path / "report.html"
    code, err = call(capsys, ["report", str(run), "-o", str(out)])
    assert code == 1 and one_line(err.split("\n", 1)[1]) == f"cnnlab: error: no space left on device: {out}"
    assert not out.exists()


def test_out_inside_another_runs_checkpoints_is_refused(run, capsys):
    target = run / "checkpoints" / "nested"
    code, err = call(capsys, ["train", "mlp-tiny", "--dataset", "mnist-sample", "--out", str(target)])
    assert code == 2 and "checkpoints" in one_line(err)
    assert not target.exists()


def test_a_failed_run_leaves_no_parent_folders_and_an_honest_way_on(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "c" / "run"
    code, err = call(capsys, ["train", "mlp-tiny", "--dataset", "kmnist", "--out", str(out)])
    assert code == 2
    assert not (tmp_path / "a").exists()


def test_a_run_stopped_before_its_first_checkpoint_says_how_to_restart(run, capsys):
    shutil.rmtree(run / "checkpoints")
    (run / "summary.json").unlink()
    code, err = call(capsys, ["train", "mlp-tiny", "--dataset", "mnist-sample", "--out", str(run)])
    assert code == 2 and "--resume auto --out" in one_line(err)
    code, err = call(capsys, ["train", "--resume", str(run)])
    assert code == 2 and "--resume auto" in one_line(err)


@pytest.mark.slow
def test_a_failed_sweep_does_not_block_the_corrected_command(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, err = call(capsys, ["sweep", "--models", "mlp-tiny", "--dataset", "kmnist", "--epochs", "1", "-o", str(out)])
    assert code == 2
    code, err = call(
        capsys,
        [
            "sweep",
            "--models",
            "mlp-tiny",
            "--dataset",
            "mnist-sample",
            "--epochs",
            "1",
            "--limit-train",
            "256",
            "--limit-test",
            "100",
            "--recipe",
            "none",
            "-o",
            str(out),
        ],
    )
    assert code == 0, err
    assert json.loads((out / "experiment.json").read_text())["status"] == "complete"


def test_atomic_writes_and_folders_stay_inside_their_owner(tmp_path):
    """The two checks under every run write: a file's folder, and a folder made, must resolve inside the run."""
    from cnnlab.files import UnsafeFileError, confined, make_dirs, write_bytes_atomic

    run, away = tmp_path / "run", tmp_path / "away"
    run.mkdir()
    away.mkdir()
    (run / "sub").symlink_to(away, target_is_directory=True)
    with pytest.raises(UnsafeFileError, match="outside"):
        write_bytes_atomic(run / "sub" / "x.png", b"x", within=run)
    with confined(run), pytest.raises(UnsafeFileError, match="outside"):
        write_bytes_atomic(run / "sub" / "x.png", b"x")
    with pytest.raises(UnsafeFileError, match="outside"):
        make_dirs(run / "sub" / "deeper", within=run)
    assert list(away.iterdir()) == []
    write_bytes_atomic(tmp_path / "free.png", b"x")  # outside any confinement: an ordinary write
    with confined(run):
        write_bytes_atomic(tmp_path / "elsewhere.png", b"x")  # a path not named under the run is not confined
    assert (tmp_path / "elsewhere.png").read_bytes() == b"x"


def test_a_checkpoint_linked_out_of_the_run_is_not_loaded(run, tmp_path, capsys):
    elsewhere = tmp_path / "someone-elses.pt"
    shutil.move(run / "checkpoints" / "best.pt", elsewhere)
    (run / "checkpoints" / "best.pt").symlink_to(elsewhere)
    code, err = call(capsys, ["eval", str(run)])
    assert code == 2 and "symbolic link" in one_line(err)


def test_a_fifo_checkpoint_does_not_hang(run):
    (run / "checkpoints" / "last.pt").unlink()
    os.mkfifo(run / "checkpoints" / "last.pt")
    done = run_cli("train", "--resume", str(run), "--epochs", "2")
    assert done.returncode == 2 and "FIFO" in one_line(done.stderr)
