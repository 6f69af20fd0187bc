"""The promises of "What cnnlab guarantees", checked on the code production runs (fast lane).

- atomic: every file of a run but the two append-only logs reaches its name only by a rename;
- resume: an interrupted and resumed run ends bit for bit where an uninterrupted one does, schedule included;
- schedules: every learning-rate schedule gives the closed-form value at chosen steps, across a resume too.

Each was checked by breaking the invariant by hand in the production code and watching its test fail.
"""

from __future__ import annotations

import builtins
import math
import os
import re
from pathlib import Path

import pytest
import torch

from cnnlab.runfolder.config import TrainConfig
from cnnlab.training import train
from cnnlab.training.loop import TrainingInterrupted
from cnnlab.training.optim import build_scheduler
from conftest import interrupt_at

TINY = dict(
    model="mlp-tiny",
    dataset="mnist-sample",
    recipe="none",
    batch_size=64,
    limit_train=320,
    limit_test=100,
    progress=False,
    deterministic=True,
)
TEMP_FILE = re.compile(r"^\..+\.tmp$")  # the atomic writer's temp files (.NAME.XXXX.tmp), renamed into place
APPEND_ONLY = {"metrics.csv", "steps.csv"}  # appended a row at a time (fsynced), rewritten atomically on resume


@pytest.fixture
def file_writes(monkeypatch):
    """Every path opened for writing (builtins.open, os.open) and every rename destination, in order."""
    opened: list[Path] = []
    renamed: list[Path] = []
    real_open, real_os_open, real_replace = builtins.open, os.open, os.replace

    def spy_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
            opened.append(Path(file).absolute())
        return real_open(file, mode, *args, **kwargs)

    def spy_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            opened.append(Path(path).absolute())
        return real_os_open(path, flags, *args, **kwargs)

    def spy_replace(src, dst, *args, **kwargs):
        renamed.append(Path(dst).absolute())
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(os, "replace", spy_replace)
    return opened, renamed


def test_every_run_file_is_written_by_rename_only(tmp_path, file_writes):
    """A kill at any moment leaves the old or the new file: no run file is ever opened for writing under its name."""
    opened, renamed = file_writes
    out = tmp_path / "run"
    train(out=str(out), epochs=2, **TINY)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {
        "config.json",
        "summary.json",
        "metrics.csv",
        "steps.csv",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "curves.png",
        "confusion.png",
        "per_class.png",
        "samples.png",
        ".lock",
    }
    assert expected <= files
    written_in_place = {
        p.relative_to(out.absolute()).as_posix()
        for p in opened
        if p.is_relative_to(out.absolute()) and not TEMP_FILE.search(p.name)
    }
    assert written_in_place - APPEND_ONLY - {".lock"} == set()
    for name in expected - {".lock"}:
        assert out.absolute() / name in renamed, name


def test_a_resumed_run_ends_bit_for_bit_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """The fast lane's successful resume: stopped mid-epoch by Ctrl-C, resumed, same weights, lr and rows."""
    options = dict(TINY, epochs=2, schedule="cosine", warmup_epochs=0.5)
    whole = train(out=str(tmp_path / "whole"), **options)
    interrupt_at(monkeypatch, epoch_to_stop=1, step_to_stop=1)
    with pytest.raises(TrainingInterrupted):
        train(out=str(tmp_path / "split"), **options)
    monkeypatch.undo()
    resumed = train(resume=tmp_path / "split")
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    # (the resumed run's earlier rows come back from metrics.csv, written to 8 significant digits)
    assert [r["lr"] for r in resumed.history] == pytest.approx([r["lr"] for r in whole.history], rel=1e-7)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(
        [r["train_loss"] for r in whole.history], rel=1e-6
    )


def _lrs(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The lr of every optimizer step of a run, as the trainer's scheduler sets it."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    lrs = []
    for _ in range(config.epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize(
    "schedule, options, expected",
    [
        ("constant", {}, {0: 0.1, 17: 0.1, 39: 0.1}),
        ("step", {"step_size": 2, "gamma": 0.5}, {0: 0.1, 19: 0.1, 20: 0.05, 39: 0.05}),
        ("step", {"step_size": 1, "gamma": 0.5}, {9: 0.1, 10: 0.05, 39: 0.1 * 0.5**3}),
        ("cosine", {}, {0: 0.1, 20: 0.05, 39: 0.1 * 0.5 * (1 + math.cos(math.pi * 39 / 40))}),
        # warm-up: a linear rise to the peak over one epoch (10 steps), then the cosine over the remaining 30
        (
            "cosine",
            {"warmup_epochs": 1},
            {0: 0.01, 4: 0.05, 9: 0.1, 10: 0.1, 25: 0.05, 39: 0.1 * 0.5 * (1 + math.cos(math.pi * 29 / 30))},
        ),
        ("constant", {"warmup_epochs": 1}, {0: 0.01, 9: 0.1, 30: 0.1}),
    ],
)
def test_schedules_give_their_closed_form(schedule, options, expected):
    config = TrainConfig(
        model="mlp-tiny", dataset="mnist-sample", recipe="none", epochs=4, lr=0.1, schedule=schedule, **options
    )
    lrs = _lrs(config, steps_per_epoch=10)
    for step, lr in expected.items():
        assert lrs[step] == pytest.approx(lr, rel=1e-9), (schedule, step)


def test_onecycle_rises_to_the_peak_and_falls_to_nearly_zero():
    config = TrainConfig(model="mlp-tiny", dataset="mnist-sample", recipe="none", epochs=4, lr=0.1, schedule="onecycle")
    lrs = _lrs(config, steps_per_epoch=10)
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(0.1) and peak == round(0.25 * 40) - 1
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[-1] < 1e-5
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))


@pytest.mark.parametrize("schedule", ["step", "cosine", "onecycle"])
def test_a_schedule_continues_across_a_resume(schedule):
    """The scheduler's state saved at any step and loaded into a fresh one continues the same sequence."""
    config = TrainConfig(
        model="mlp-tiny",
        dataset="mnist-sample",
        recipe="none",
        epochs=4,
        lr=0.1,
        schedule=schedule,
        step_size=1,
        warmup_epochs=0.5,
    )
    whole = _lrs(config, steps_per_epoch=10)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    scheduler = build_scheduler(optimizer, config, 10)
    for _ in range(13):
        optimizer.step()
        scheduler.step()
    saved = (optimizer.state_dict(), scheduler.state_dict())
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    scheduler = build_scheduler(optimizer, config, 10)
    optimizer.load_state_dict(saved[0])
    scheduler.load_state_dict(saved[1])
    continued = []
    for _ in range(13, 40):
        continued.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert continued == pytest.approx(whole[13:], rel=1e-12)


def test_on_epoch_end_sees_every_row_and_can_stop_the_run(tmp_path):
    """What a search's pruner uses: each epoch's row after its checkpoint; True ends the run there, complete."""
    seen = []

    def stop_after_two(row):
        seen.append(row["epoch"])
        return row["epoch"] == 2

    result = train(out=str(tmp_path / "run"), epochs=4, on_epoch_end=stop_after_two, **TINY)
    assert seen == [1, 2] and [r["epoch"] for r in result.history] == [1, 2]
    assert result.summary["status"] == "complete" and result.summary["stopped_early"]["epoch"] == 2
    assert result.summary["target_reached"] is None
