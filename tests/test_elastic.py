"""Elastic data-parallel training: --resume auto, torchrun restarts after a lost worker, two simulated nodes,
and bounded waits for a vanished peer (--dist-timeout). All on the CPU with gloo and the embedded sample."""

import csv
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.runfolder.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")

# As in test_distributed: no BatchNorm, no dropout, so 2 x 32 images per step give the update of 1 x 64.
BASE = [
    "train",
    "mlp-tiny",
    "--dataset",
    "mnist-sample",
    "--recipe",
    "none",
    "--optimizer",
    "sgd",
    "--lr",
    "0.05",
    "--batch-size",
    "64",
    "--limit-train",
    "640",
    "--limit-test",
    "200",
    "--no-progress",
]
# Slow enough (~0.5-1 s an epoch on 2 CPU processes) to kill a worker in the middle of epoch 2.
LONG = [
    "train",
    "fast-cnn",
    "--dataset",
    "mnist-sample",
    "--recipe",
    "none",
    "--optimizer",
    "sgd",
    "--lr",
    "0.02",
    "--batch-size",
    "16",
    "--limit-test",
    "200",
    "--no-progress",
    "--epochs",
    "3",
]
# One thread per process: the 2 processes share the machine's cores (torchrun sets this for 2 local processes too).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # `torchrun`, without relying on PATH


def cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def start():
    """Popen in its own session; whatever is still running when the test ends (a failed one) is killed."""
    jobs = []

    def _start(args) -> subprocess.Popen:
        jobs.append(
            subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True
            )
        )
        return jobs[-1]

    yield _start
    for job in jobs:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)  # the agent and its workers: the session this test started
            job.communicate()


def epochs_of(run_dir) -> list[int]:
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def summary(run_dir) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def assert_close(a, b, rtol=1e-5, atol=1e-6):
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=atol, msg=name)


def worker_pids(agent_pid: int) -> dict[int, int]:
    """{global rank: pid} of the workers a torchrun agent started (its children that carry RANK), from /proc."""
    ranks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces: split after ")"
            if ppid != agent_pid:
                continue
            env = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if "RANK" in env:
            ranks[int(env["RANK"])] = int(entry.name)
    return ranks


def wait_for_epoch_row(run_dir: Path, epoch: int, process: subprocess.Popen, timeout: float = 120):
    """Poll steps.csv (a row every ~10% of an epoch) until a row of `epoch` appears."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if any(line.startswith(f"{epoch},") for line in (run_dir / "steps.csv").read_text().splitlines()):
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"no row of epoch {epoch} in {run_dir / 'steps.csv'} within {timeout} s")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """BASE for 2 epochs in 1 process: what every data-parallel run of the same global batch must reproduce."""
    out = tmp_path_factory.mktemp("one") / "run"
    result = cli(*BASE, "--epochs", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """LONG on 2 processes, never interrupted."""
    out = tmp_path_factory.mktemp("long") / "run"
    result = subprocess.run(
        [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "cnnlab", *LONG, "--out", str(out)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return out


# ---- --resume auto, in one process ---------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_auto_starts_then_continues(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main([*BASE, "--epochs", "1", "--resume", "auto", "--out", out]) == 0
    assert main([*BASE, "--epochs", "2", "--resume", "auto", "--out", out]) == 0
    assert epochs_of(out) == [1, 2]
    assert "resuming" in capsys.readouterr().out
    assert summary(out)["status"] == "complete"


@pytest.mark.slow
def test_resume_auto_matches_an_uninterrupted_run(tmp_path, one_process):
    out = str(tmp_path / "run")
    assert main([*BASE, "--epochs", "1", "--resume", "auto", "--out", out]) == 0
    # a different --dist-timeout does not make the resume incompatible
    assert main([*BASE, "--epochs", "2", "--resume", "auto", "--out", out, "--dist-timeout", "60"]) == 0
    assert_close(load_checkpoint(one_process)["model"], load_checkpoint(out)["model"])


@pytest.mark.slow
def test_resume_auto_restarts_a_run_that_died_before_its_first_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert main([*BASE, "--epochs", "1", "--out", str(out)]) == 0
    for checkpoint in (out / "checkpoints").glob("*.pt"):  # as if killed before last.pt was written
        checkpoint.unlink()
    (out / "summary.json").unlink()
    assert main([*BASE, "--epochs", "2", "--resume", "auto", "--out", str(out)]) == 0
    assert epochs_of(out) == [1, 2]  # the dead attempt's row is not kept twice
    assert load_checkpoint(out)["epoch"] == 2


@pytest.mark.slow
def test_resume_auto_refuses_another_run_and_a_live_one(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*BASE, "--epochs", "1", "--out", str(out)]) == 0
    for checkpoint in (out / "checkpoints").glob("*.pt"):
        checkpoint.unlink()
    other = ["train", "cnn-tiny", *BASE[2:]]
    capsys.readouterr()
    assert main([*other, "--resume", "auto", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds another run (model='mlp-tiny', not 'cnn-tiny')" in err and err.count("\n") == 1
    # with a checkpoint, --resume's own compatibility check speaks
    assert main([*BASE, "--epochs", "1", "--out", str(tmp_path / "done")]) == 0
    assert main([*other, "--resume", "auto", "--out", str(tmp_path / "done")]) == 2
    assert "cannot resume" in capsys.readouterr().err
    with open(tmp_path / "done" / ".lock") as lock:  # a training still running there
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert main([*BASE, "--epochs", "2", "--resume", "auto", "--out", str(tmp_path / "done")]) == 2
    assert "in use by another cnnlab process" in capsys.readouterr().err
    assert epochs_of(tmp_path / "done") == [1]


def test_resume_auto_needs_out_and_a_request(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*BASE, "--resume", "auto"]) == 2
    assert "need the run folder named with --out DIR" in capsys.readouterr().err
    assert main(["train", "--resume", "auto", "--out", "run"]) == 2
    assert "takes the whole request" in capsys.readouterr().err
    # a torchrun restart is an automatic resume: without --out it says so too
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert main([*BASE]) == 2
    assert "need the run folder named with --out DIR" in capsys.readouterr().err
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "2")  # restarts possible: the first attempt needs --out too
    assert main([*BASE]) == 2
    assert not (tmp_path / "runs").exists()


def test_dist_timeout_must_be_positive(tmp_path, capsys):
    assert main([*BASE, "--dist-timeout", "0", "--out", str(tmp_path / "r")]) == 2
    assert "--dist-timeout" in capsys.readouterr().err and not (tmp_path / "r").exists()


# ---- several processes through torchrun ----------------------------------------------------------------------


@pytest.mark.slow
def test_two_nodes_on_loopback_match_one_process(tmp_path, one_process, start):
    """The README's two-machine command, with both "machines" on 127.0.0.1."""
    out = tmp_path / "run"
    node = [
        *TORCHRUN,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{free_port()}",
        "--rdzv-id",
        "cnnlab-test",
    ]
    nodes = [
        start([*node, "--node-rank", str(rank), "-m", "cnnlab", *BASE, "--epochs", "2", "--out", str(out)])
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=180) for p in nodes]
    for p, (_, stderr) in zip(nodes, outputs):
        assert p.returncode == 0, stderr
    stdout = "".join(stdout for stdout, _ in outputs)
    assert stdout.count("x 2 processes") == 1 and stdout.count("done:") == 1  # rank 0 only, on one of the nodes
    assert epochs_of(out) == [1, 2]
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert_close(load_checkpoint(one_process)["model"], load_checkpoint(out)["model"])


def _kill_rank_one_in_epoch_two(tmp_path, start, max_restarts: int):
    """A 2-process torchrun job of LONG, with rank 1 killed once epoch 2 has begun: (run folder, job)."""
    out = tmp_path / "run"
    job = start(
        [
            *TORCHRUN,
            "--standalone",
            "--nproc-per-node",
            "2",
            "--max-restarts",
            str(max_restarts),
            "--monitor-interval",
            "0.2",
            "-m",
            "cnnlab",
            *LONG,
            "--out",
            str(out),
        ]
    )
    wait_for_epoch_row(out, 2, job)
    os.kill(worker_pids(job.pid)[1], signal.SIGKILL)
    return out, job


@pytest.mark.slow
def test_lost_worker_is_restarted_and_the_run_continues(tmp_path, uninterrupted, start):
    out, job = _kill_rank_one_in_epoch_two(tmp_path, start, max_restarts=1)
    stdout, stderr = job.communicate(timeout=240)
    assert job.returncode == 0, stderr
    assert "cnnlab: error: lost rank 1 of 2" in stderr and "torchrun restarts the job" in stderr
    assert "torchrun restart 1: continuing the run" in stdout and "resuming" in stdout and "at epoch 2" in stdout
    assert epochs_of(out) == [1, 2, 3]  # every epoch once
    assert summary(out)["final_test_acc"] == pytest.approx(summary(uninterrupted)["final_test_acc"], abs=0.011)
    assert_close(load_checkpoint(uninterrupted)["model"], load_checkpoint(out)["model"], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_lost_worker_without_restarts_is_one_line_from_rank_zero(tmp_path, start):
    out, job = _kill_rank_one_in_epoch_two(tmp_path, start, max_restarts=0)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode != 0
    ours = [line for line in stderr.splitlines() if line.startswith("cnnlab:")]
    assert (
        len(ours) == 1
        and ours[0].startswith("cnnlab: error: lost rank 1 of 2 (")
        and ours[0].endswith(f"resume with: cnnlab train --resume {out}")
    ), stderr
    assert "cnnlab/training" not in stderr  # no traceback from the workers (torchrun's own report may follow)
    assert load_checkpoint(out)["epoch"] == 1


@pytest.mark.slow
def test_a_frozen_peer_ends_the_job_after_dist_timeout(tmp_path, start):
    out = tmp_path / "run"
    job = start(
        [
            sys.executable,
            "-m",
            "cnnlab",
            *LONG,
            "--epochs",
            "20",
            "--out",
            str(out),
            "--nproc",
            "2",
            "--dist-timeout",
            "4",
        ]
    )
    wait_for_epoch_row(out, 2, job)
    time.sleep(0.5)  # let the agent's worker list settle
    ranks = worker_pids(job.pid)
    os.kill(ranks[1], signal.SIGSTOP)  # alive but silent: its sockets stay open, so only the timeout can tell
    stopped = time.time()
    try:
        while alive(ranks[0]) and time.time() - stopped < 60:
            time.sleep(0.1)
        waited = time.time() - stopped
    finally:
        os.kill(ranks[1], signal.SIGKILL)  # our worker: the agent would only SIGKILL it 30 s after SIGTERM
    _, stderr = job.communicate(timeout=60)
    assert 3.5 < waited < 4 + 2 + 10, stderr  # the timeout, the check-in wait, slack for a loaded machine
    assert job.returncode == 1
    ours = [line for line in stderr.splitlines() if line.startswith("cnnlab:")]
    assert len(ours) == 1 and "lost rank 1 of 2 (no answer within --dist-timeout 4 s)" in ours[0], stderr
    assert "resume with: cnnlab train --resume" in ours[0]
