"""The CUDA path: runs only where a GPU is present (never in CI); skipped cleanly elsewhere."""

import json
import subprocess
import sys

import pytest
import torch

from cnnlab.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SAMPLE = dict(dataset="mnist-sample", epochs=2, progress=False)


def test_auto_device_trains_on_the_gpu(tmp_path):
    result = train(model="fast-cnn", out=str(tmp_path / "run"), **SAMPLE)
    assert result.summary["device"].startswith("cuda")
    assert result.summary["precision"] == "fp32"  # the fast recipe's precision=auto on a GPU
    assert next(result.model.parameters()).is_cuda
    assert result.summary["final_test_acc"] > 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.parametrize(
    "options", [{"precision": "fp16"}, {"precision": "fp32", "channels_last": True}, {"compile": True}]
)
def test_precisions_and_fast_paths_learn(tmp_path, options):
    # 4 epochs: the sample gives only 16 steps an epoch; fp32 and fp16 both reach 93-94% then (on a CPU).
    result = train(model="convnet", recipe="fast", out=str(tmp_path / "run"), **{**SAMPLE, "epochs": 4}, **options)
    assert result.summary["final_test_acc"] > 0.85, options


def test_gpu_checkpoint_evaluates_the_same_on_the_cpu(tmp_path):
    run = train(model="lenet", recipe="fast", out=str(tmp_path / "run"), **SAMPLE).run_dir
    results = {}
    for device in ("cuda", "cpu"):
        done = subprocess.run(
            [sys.executable, "-m", "cnnlab", "eval", str(run), "--device", device, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        results[device] = json.loads(done.stdout)
    assert results["cpu"]["accuracy"] == pytest.approx(results["cuda"]["accuracy"], abs=0.005)


def test_resume_on_the_gpu_continues(tmp_path):
    out = tmp_path / "run"
    train(model="convnet", recipe="fast", out=str(out), **{**SAMPLE, "epochs": 1})
    resumed = train(resume=out, epochs=2)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
