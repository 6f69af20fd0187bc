"""The trainer end to end, on the embedded MNIST sample (2,000 train / 500 test images)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.data.batches import Batches
from cnnlab.runfolder.checkpoint import load_checkpoint, save_atomic
from cnnlab.runfolder.layout import METRIC_COLUMNS
from cnnlab.training import NonFiniteLoss, TrainConfig, TrainingInterrupted, train
from conftest import interrupt_at

SAMPLE = dict(dataset="mnist-sample", progress=False)


def quick(tmp_path, name="run", **options):
    values = dict(
        model="convnet",
        recipe="none",
        epochs=2,
        batch_size=64,
        optimizer="adam",
        lr=0.005,
        momentum=0.9,
        out=str(tmp_path / name),
        **SAMPLE,
    )
    values.update(options)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    return train(quick(tmp, epochs=3, seed=1))


def test_loss_falls_and_accuracy_rises(trained_run):
    history = trained_run.history
    assert len(history) == 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["train_acc"] > history[0]["train_acc"]
    assert history[-1]["test_acc"] > 0.8  # 10 classes: chance is 0.1


def test_run_folder_contents(trained_run):
    run = trained_run.run_dir
    for name in [
        "config.json",
        "metrics.csv",
        "summary.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "curves.png",
        "confusion.png",
        "per_class.png",
        "samples.png",
    ]:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == METRIC_COLUMNS and [int(r["epoch"]) for r in rows] == [1, 2, 3]
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["model"] == "convnet" and config["torch"] == torch.__version__
    assert {"python", "cnnlab", "device", "host", "command"} <= set(config)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["params"] == 9098 and summary["macs"] > 0
    assert summary["final_test_acc"] == pytest.approx(float(rows[-1]["test_acc"]), abs=1e-6)
    assert summary["best_test_acc"] >= summary["final_test_acc"]


def test_checkpoint_loads_weights_only_with_everything_to_resume(trained_run):
    state = torch.load(trained_run.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "step", "rng", "config", "version"} <= set(state)
    assert state["epoch"] == 3 and state["step"] == 0
    assert state["config"]["model"] == "convnet"


@pytest.mark.slow
def test_config_file_repeats_the_run(trained_run, tmp_path):
    first = trained_run
    again = main(
        ["train", "--config", str(first.run_dir / "config.json"), "--out", str(tmp_path / "again"), "--no-progress"]
    )
    assert again == 0
    a = json.loads((first.run_dir / "summary.json").read_text())
    b = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert a["final_test_acc"] == pytest.approx(b["final_test_acc"], abs=0.01 if torch.cuda.is_available() else 0)
    w1 = load_checkpoint(first.run_dir)["model"]
    w2 = load_checkpoint(tmp_path / "again")["model"]
    if torch.cuda.is_available():  # cuDNN picks non-deterministic kernels: equal up to float noise
        assert all(torch.allclose(w1[k], w2[k], atol=1e-3) for k in w1)
    else:
        assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_atomic_checkpoint_survives_a_crash_during_write(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"model": {"w": torch.ones(3)}, "config": {}}, path)

    def crash(src, dst):
        raise OSError("disk died")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_atomic({"model": {"w": torch.zeros(3)}, "config": {}}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


@pytest.mark.slow
@pytest.mark.parametrize("model,options", [("convnet", {}), ("mlp-tiny", {"augment": True, "schedule": "onecycle"})])
def test_resume_mid_epoch_is_bitwise_equal(tmp_path, monkeypatch, model, options):
    config = quick(tmp_path, model=model, epochs=2, deterministic=True, limit_train=640, **options)
    whole = train(config.replace(out=str(tmp_path / "whole")))
    interrupt_at(monkeypatch, epoch_to_stop=0, step_to_stop=4)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config.replace(out=str(tmp_path / "split")))
    assert stopped.value.exit_code == 130 and "--resume" in str(stopped.value)
    monkeypatch.undo()
    state = load_checkpoint(tmp_path / "split")
    assert (state["epoch"], state["step"]) == (0, 5)
    resumed = train(resume=tmp_path / "split")
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    rows = list(csv.DictReader(open(tmp_path / "split" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[0]["train_loss"]) == pytest.approx(whole.history[0]["train_loss"], rel=1e-7)


def _long_run_after_first_checkpoint(out):
    """A `cnnlab train` subprocess that would run for ages, once it has written a checkpoint."""
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "mlp-tiny",
        "--dataset",
        "mnist-sample",
        "--epochs",
        "1000",
        "--out",
        str(out),
        "--no-progress",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    return process


@pytest.mark.slow
def test_sigint_in_subprocess_leaves_a_resumable_checkpoint(tmp_path):
    out = tmp_path / "run"
    process = _long_run_after_first_checkpoint(out)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and f"cnnlab train --resume {out}" in stderr
    state = load_checkpoint(out)
    assert state["epoch"] >= 1
    resumed = main(["train", "--resume", str(out), "--epochs", str(state["epoch"] + 1)])
    assert resumed == 0
    assert json.loads((out / "summary.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_sigterm_exits_143(tmp_path):
    process = _long_run_after_first_checkpoint(tmp_path / "run")
    process.terminate()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "SIGTERM" in stderr


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    first = train(quick(tmp_path, epochs=1, limit_train=256))
    original = Batches.iterate

    def poisoned(self, epoch=0, start_step=0):
        for step, x, y in original(self, epoch, start_step):
            yield step, (x * float("nan") if self.shuffle and step == 2 else x), y

    monkeypatch.setattr(Batches, "iterate", poisoned)
    # The CPU checks every step; CUDA every few steps (a host sync), then at the latest at the epoch's end.
    with pytest.raises(NonFiniteLoss, match="epoch 2" if torch.cuda.is_available() else "epoch 2, step 2") as err:
        train(resume=first.run_dir, epochs=2)
    assert f"the last good checkpoint is kept in {first.run_dir / 'checkpoints'}" in str(err.value)
    state = load_checkpoint(first.run_dir)
    assert state["epoch"] == 1 and all(torch.isfinite(t).all() for t in state["model"].values())


def test_nan_loss_exit_code_from_cli(tmp_path, capsys):
    code = main(
        [
            "train",
            "convnet",
            "--dataset",
            "mnist-sample",
            "--lr",
            "1e30",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "nan"),
            "--no-progress",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "loss became" in err and "no checkpoint was written before it" in err  # not a folder that isn't there


@pytest.mark.slow
def test_plain_progress_when_not_a_terminal(tmp_path, capsys):
    assert main(["train", "mlp-tiny", "--dataset", "mnist-sample", "--epochs", "2", "--out", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ") and "train loss" in line]
    assert len(epoch_lines) == 2
    for line in epoch_lines:
        for part in ("train loss", "acc", "test loss", "lr", "img/s"):
            assert part in line
    # A log is not silent within an epoch: a line every ~10% of it (16 steps: every 2nd), none after the last step.
    step_lines = [line for line in out.splitlines() if " step " in line]
    assert [line.split()[3] for line in step_lines[:8]] == [f"{s}/16" for s in range(2, 16, 2)] + ["2/16"]
    assert all("loss" in line and "img/s" in line for line in step_lines)
    assert "\r" not in out + err


def test_best_pt_is_weights_only_and_last_pt_is_what_a_run_continues_from(tmp_path, capsys):
    import shutil

    from cnnlab.runs import load_run

    run = train(quick(tmp_path, model="mlp-tiny", epochs=1, limit_train=128, optimizer="adam")).run_dir
    best, last = load_checkpoint(run, "best.pt"), load_checkpoint(run, "last.pt")
    assert best["resumable"] is False and not {"optimizer", "scheduler", "scaler", "rng"} & set(best)
    assert {"optimizer", "scheduler", "scaler", "rng"} <= set(last) and "resumable" not in last
    for key, tensor in best["model"].items():
        assert torch.equal(tensor, last["model"][key])
    # Adam keeps two tensors per weight: the full state is about three times the weights.
    assert (run / "checkpoints" / "best.pt").stat().st_size < 0.5 * (run / "checkpoints" / "last.pt").stat().st_size
    assert load_run(run).checkpoint["path"].endswith("best.pt")  # eval, predict, export, inspect read it as before
    shutil.copy(run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt")
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "holds weights only (a best.pt)" in err and "--init-from" in err and err.count("\n") == 1


def test_a_notebook_gets_one_redrawn_bar_not_a_line_every_tenth_of_an_epoch():
    import io

    from cnnlab.training.progress import Progress

    # What ipykernel puts in sys.stderr: isatty() is False, yet the notebook redraws a line on "\r".
    notebook_stream = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})()
    log = io.StringIO()
    progress = Progress(True, 16, stream=notebook_stream, log=log)
    progress.start_epoch(0, 2, 0)
    for step in range(16):
        progress.step()
        progress.report({"epoch": 1, "step": step + 1, "loss": 0.5, "accuracy": 0.9, "images_per_s": 100.0}, 16)
    progress.close()
    assert log.getvalue() == "" and "\r" in notebook_stream.getvalue() and "epoch 1/2" in notebook_stream.getvalue()
    plain = io.StringIO()  # a log file: lines, no bar
    progress = Progress(True, 16, stream=plain, log=log)
    progress.start_epoch(0, 2, 0)
    progress.report({"epoch": 1, "step": 2, "loss": 0.5, "accuracy": 0.9, "images_per_s": 100.0}, 16)
    assert plain.getvalue() == "" and log.getvalue().startswith("epoch 1/2  step 2/16")


def test_a_nan_names_the_lr_its_step_used(tmp_path, capsys):
    # Warm-up over 20 steps: step k uses (k + 1) / 20 of the lr; the scheduler has already moved to step k + 1.
    argv = ["train", "convnet", "--dataset", "mnist-sample", "--lr", "1e30", "--schedule", "constant"]
    argv += ["--warmup-epochs", "1", "--batch-size", "100", "--limit-train", "2000", "--epochs", "1"]
    assert main([*argv, "--out", str(tmp_path / "nan"), "--no-progress"]) == 1
    assert "at epoch 1, step 1 (lr 1e+29)" in capsys.readouterr().err


def test_recipe_reference_fills_in_the_published_set_up(tmp_path):
    from cnnlab.training import resolve_config

    config = resolve_config({"model": "mlp-tiny", "recipe": "reference"})
    assert (config.batch_size, config.lr, config.momentum, config.optimizer, config.epochs) == (64, 0.01, 0.5, "sgd", 1)
    assert config.normalize == "0.1307,0.3081"
    # A flag overrides the recipe.
    assert resolve_config({"model": "mlp-tiny", "recipe": "reference", "lr": 0.1}).lr == 0.1


def test_yaml_config_and_flags_override(tmp_path):
    from cnnlab.runfolder.config_file import load_config_file
    from cnnlab.training import resolve_config

    path = tmp_path / "c.yaml"
    path.write_text("model: lenet\nepochs: 7\nlr: 0.3\n")
    config = resolve_config({**load_config_file(path), "lr": 0.2})  # flags over the file, as the CLI layers them
    assert (config.model, config.epochs, config.lr) == ("lenet", 7, 0.2)


def _error_of(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "convnett"], "did you mean 'convnet'"),
        (["train", "convnet", "--dataset", "mnits"], "unknown dataset 'mnits'"),
        (["train", "convnet", "--optimizer", "adagrad"], "unknown --optimizer 'adagrad'"),
        (["train", "convnet", "--lr", "0"], "--lr must be a finite positive number"),
        (["train", "convnet", "--lr", "-1"], "--lr must be a finite positive number"),
        (["train", "convnet", "--epochs", "0"], "--epochs must be a positive integer"),
        (["train", "convnet", "--batch-size", "-4"], "--batch-size must be a positive integer"),
        (["train", "convnet", "--config", "/nonexistent/c.yaml"], "cannot read config file"),
        (["train", "--resume", "/nonexistent/run"], "no such run folder or checkpoint"),
        (["train", "alexnet", "--dataset", "mnist-sample", "--resize", "32"], "65x65 pixels or larger"),
        (
            ["train", "convnet", "--device", "cuda"] if not torch.cuda.is_available() else ["train", "x"],
            "cuda" if not torch.cuda.is_available() else "unknown model",
        ),
        (["train", "convnet", "--normalize", "0.5"], "--normalize must be"),
        (["train", "mlp-tiny", "--dataset", "mnist-sample", "--resize", "32"], "exactly 28x28"),
        (["train", "convnet", "--init", "normal:x"], "--init must be"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle, tmp_path):
    code, err = _error_of(capsys, argv + ["--out", str(tmp_path / "r")])
    assert code == 2
    assert err.startswith("cnnlab: error: ") and needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_config_keys_and_unparseable_config(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nepohcs: 3\n")
    code, err = _error_of(capsys, ["train", "convnet", "--config", str(bad)])
    assert code == 2 and "unknown config file bad.yaml key 'epohcs'" in err and "did you mean 'epochs'" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, err = _error_of(capsys, ["train", "convnet", "--config", str(broken)])
    assert code == 2 and "cannot parse config file" in err and len(err.strip().splitlines()) == 1


def test_resume_of_a_different_model_is_refused(trained_run, capsys):
    code, err = _error_of(capsys, ["train", "lenet", "--resume", str(trained_run.run_dir), "--epochs", "9"])
    assert code == 2 and "model='convnet'" in err


def test_unwritable_output_folder(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = _error_of(capsys, ["train", "convnet", "--dataset", "mnist-sample", "--out", str(blocker / "run")])
    assert code == 2 and "cannot write the run folder" in err and "--out" in err


def test_eval_reports_accuracy_and_confusion(trained_run, capsys):
    assert main(["eval", str(trained_run.run_dir), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["count"] == 500 and len(report["confusion"]) == 10
    assert sum(map(sum, report["confusion"])) == 500
    best = json.loads((trained_run.run_dir / "summary.json").read_text())["best_test_acc"]
    assert report["accuracy"] == pytest.approx(best, abs=1e-9)
    assert Path(report["confusion_png"]).is_file()
    figure = Path(report["confusion_png"]).read_bytes()
    assert main(["eval", str(trained_run.run_dir)]) == 0
    text = capsys.readouterr().out
    assert "per-class accuracy" in text and "confusion matrix" in text and "kept from an earlier eval" in text
    assert Path(report["confusion_png"]).read_bytes() == figure


def test_predict_png_and_npy(trained_run, tmp_path, capsys):
    from PIL import Image

    from cnnlab.data import load_dataset

    data = load_dataset("mnist-sample")
    images = data.test_images[:4, 0].numpy()
    paths = []
    for i, image in enumerate(images):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    np.save(tmp_path / "batch.npy", images)
    assert main(["predict", str(trained_run.run_dir), *paths, "--format", "json", "-k", "2"]) == 0
    from_png = json.loads(capsys.readouterr().out)
    assert main(["predict", str(trained_run.run_dir), str(tmp_path / "batch.npy"), "--format", "json", "-k", "2"]) == 0
    from_npy = json.loads(capsys.readouterr().out)
    assert len(from_png) == 4 and len(from_npy) == 4
    assert [p["top"][0]["class"] for p in from_png] == [p["top"][0]["class"] for p in from_npy]
    for item in from_png:
        assert len(item["top"]) == 2 and 0 <= item["top"][0]["probability"] <= 1
        assert item["top"][0]["probability"] >= item["top"][1]["probability"]
    # The model gets most of these right: predictions follow the true labels.
    truth = [data.spec.classes[int(y)] for y in data.test_labels[:4]]
    assert sum(p["top"][0]["class"] == t for p, t in zip(from_png, truth)) >= 3


def test_predict_rejects_a_non_image(trained_run, tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    code, err = _error_of(capsys, ["predict", str(trained_run.run_dir), str(bad)])
    assert code == 2 and "cannot read" in err
    code, err = _error_of(capsys, ["predict", str(trained_run.run_dir), str(tmp_path)])
    assert code == 2 and f"image {str(tmp_path)!r} is not a regular file" in err


@pytest.mark.slow
def test_readme_quick_start_trains(tmp_path):
    """The README's first command (after install) works in a fresh folder."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "pip install -e . && cnnlab train convnet --dataset mnist-sample" in readme
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "convnet", "--dataset", "mnist-sample"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").is_file()
    assert json.loads((runs[0] / "summary.json").read_text())["final_test_acc"] > 0.8


@pytest.mark.slow
def test_tensorboard_option_logs_every_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(quick(tmp_path, model="mlp-tiny", epochs=2, limit_train=256, tensorboard=True))
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    test_acc = [e.value for e in events.Scalars("accuracy/test")]
    assert len(test_acc) == 2
    assert test_acc[-1] == pytest.approx(result.history[-1]["test_acc"], rel=1e-5)


@pytest.mark.slow
def test_onecycle_with_very_few_steps(tmp_path):
    result = train(quick(tmp_path, model="mlp-tiny", epochs=1, batch_size=128, limit_train=500, schedule="onecycle"))
    assert len(result.history) == 1


@pytest.mark.slow
def test_target_accuracy_stops_early(tmp_path):
    result = train(quick(tmp_path, model="mlp-tiny", epochs=10, limit_train=512, target_acc=0.2))
    assert len(result.history) == 1 < 10
    reached = result.summary["target_reached"]
    assert reached["epoch"] == 1 and reached["test_acc"] >= 0.2
    assert result.summary["epochs"] == 1


@pytest.mark.slow
def test_resume_with_more_epochs_replans_the_onecycle_schedule(tmp_path, capsys):
    first = train(quick(tmp_path, epochs=1, schedule="onecycle", limit_train=512))  # peak lr 0.005
    resumed = train(resume=first.run_dir, epochs=3)  # before the fix: "Tried to step 9 times", a traceback
    assert "re-planned for 3 epochs" in capsys.readouterr().out
    lrs = [row["lr"] for row in resumed.history]
    # The one-epoch cycle had ended low; the 3-epoch cycle is still high after epoch 2, then ends low.
    assert len(lrs) == 3 and lrs[0] < 0.1 * 0.005 and lrs[1] > 0.2 * 0.005 and lrs[2] < 0.1 * 0.005
    assert all(torch.isfinite(t).all() for t in load_checkpoint(first.run_dir)["model"].values())


def test_the_lr_column_is_the_lr_the_epochs_last_step_used(tmp_path):
    # One step per epoch: the scheduler's lr *after* the last step (what the column once showed) is past the end of
    # one-cycle's plan, 1e-8 after epoch 2 and rising again after epoch 3.
    run = train(quick(tmp_path, model="mlp-tiny", epochs=3, schedule="onecycle", limit_train=64, batch_size=64))
    from cnnlab.training.optim import build_scheduler

    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.005)
    scheduler = build_scheduler(optimizer, run.config, steps_per_epoch=1)
    planned = []
    for _ in range(3):
        planned.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert [row["lr"] for row in run.history] == pytest.approx(planned, rel=1e-9)
    assert planned[1] == max(planned) and planned[2] < planned[0]  # up, then down to the end: no rise after it


@pytest.mark.slow
def test_resume_past_the_last_epoch_is_refused(tmp_path, capsys):
    run = train(quick(tmp_path, epochs=2, limit_train=256)).run_dir
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "has already finished all 2 epochs; pass --epochs N with N > 2" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["constant", "onecycle"])
def test_resume_with_a_new_lr_uses_it(tmp_path, schedule):
    first = train(quick(tmp_path, epochs=1, schedule=schedule, limit_train=256, lr=0.005))
    resumed = train(resume=first.run_dir, epochs=3, lr=0.05)
    peak = max(row["lr"] for row in resumed.history[1:])
    assert peak > 0.005  # the new plan's lr, not the checkpoint's
    assert peak <= 0.05 + 1e-12
