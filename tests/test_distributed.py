"""Data-parallel training on the CPU: 2 gloo processes through torch's elastic launcher (`--nproc 2`)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cnnlab.runfolder.checkpoint import load_checkpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built"),
]

# No BatchNorm, no dropout: 2 x 32 images per step must give the same update as 1 x 64.
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


def cli(*args):
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, timeout=300)


def weights(run_dir):
    return load_checkpoint(run_dir)["model"]


def assert_close(a, b):
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def single_and_double(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    one = cli(*BASE, "--epochs", "2", "--out", str(tmp / "one"))
    two = cli(*BASE, "--epochs", "2", "--out", str(tmp / "two"), "--nproc", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    return tmp, one, two


def test_two_processes_match_one_process(single_and_double):
    tmp, _, two = single_and_double
    assert_close(weights(tmp / "one"), weights(tmp / "two"))
    assert "x 2 processes" in two.stdout


def test_run_folder_written_once_by_rank_zero(single_and_double):
    tmp, _, two = single_and_double
    rows = (tmp / "two" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + 2 epochs, not one set per rank
    assert two.stdout.count("epoch 1/2") == 1 and two.stdout.count("done:") == 1
    assert json.loads((tmp / "two" / "config.json").read_text())["world_size"] == 2
    summary = json.loads((tmp / "two" / "summary.json").read_text())
    one = json.loads((tmp / "one" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["final_test_acc"] == pytest.approx(one["final_test_acc"], abs=0.011)


def test_resume_across_process_counts(single_and_double, tmp_path):
    tmp, _, _ = single_and_double
    # one epoch on 2 processes, the second on 1 process, must equal 2 epochs on 1 process
    first = cli(*BASE, "--epochs", "1", "--out", str(tmp_path / "mixed"), "--nproc", "2")
    assert first.returncode == 0, first.stderr
    second = cli("train", "--resume", str(tmp_path / "mixed"), "--epochs", "2", "--no-progress")
    assert second.returncode == 0, second.stderr
    assert_close(weights(tmp / "one"), weights(tmp_path / "mixed"))
    # and a 1-process checkpoint resumed on 2 processes
    first = cli(*BASE, "--epochs", "1", "--out", str(tmp_path / "back"))
    second = cli("train", "--resume", str(tmp_path / "back"), "--epochs", "2", "--no-progress", "--nproc", "2")
    assert second.returncode == 0, second.stderr
    assert_close(weights(tmp / "one"), weights(tmp_path / "back"))


def test_ctrl_c_under_two_processes_then_resume(tmp_path):
    out = tmp_path / "run"
    args = [*BASE, "--limit-train", "2000", "--epochs", "1000", "--out", str(out), "--nproc", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: every process of the job
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.count("resume with: cnnlab train --resume") == 1 and "Traceback" not in stderr
    state = load_checkpoint(out)
    resumed = cli("train", "--resume", str(out), "--epochs", str(state["epoch"] + 1), "--nproc", "2", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "complete"


def test_a_failing_rank_reports_once(tmp_path):
    result = cli(
        "train", "mlp-tiny", "--dataset", "mnist-sample", "--lr", "-1", "--nproc", "2", "--out", str(tmp_path / "r")
    )
    assert result.returncode == 2
    assert result.stderr.count("cnnlab: error: --lr must be a finite positive number") == 1
    assert "Traceback" not in result.stderr
