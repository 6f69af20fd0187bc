"""The permutation experiment and sweeps, end to end on the embedded MNIST sample with tiny budgets."""

import csv
import json
import re
import shutil
import statistics

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.data.transforms import invert_permutation, make_permutation, permute_pixels
from cnnlab.errors import CnnlabError
from cnnlab.experiments import parse_settings, read_run, run_permutation, run_sweep
from cnnlab.experiments.sweep import grid_points
from cnnlab.runs.load import load_run

TINY = dict(dataset="mnist-sample", limit_train=320, limit_test=200, progress=False)
MODELS = ("mlp-tiny", "cnn-tiny")
SEEDS = 2


def quiet(message: str) -> None:
    pass


@pytest.fixture(scope="module")
def permutation(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment") / "perm"
    return run_permutation(MODELS, seeds=SEEDS, permutation_seed=7, out=out, log=quiet, **TINY)


def _results(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_every_run_exists_and_is_complete(permutation):
    out = permutation.out_dir
    expected = {f"{m}-{c}-seed{s}" for m in MODELS for c in ("ordered", "permuted") for s in range(SEEDS)}
    assert {p.name for p in (out / "runs").iterdir()} == expected
    rows = _results(out)
    assert len(rows) == len(expected)
    for row in rows:
        record = read_run(out / row["run"])
        assert record.complete, row["run"]
        assert record.config["model"] == row["model"] and record.config["seed"] == int(row["seed"])
        assert record.config["permute_pixels"] == (row["condition"] == "permuted")
        assert record.config["recipe"] == "reference" and record.config["epochs"] == 1
        assert float(row["final_test_acc"]) == pytest.approx(record.summary["final_test_acc"])
    assert permutation.grid.actions == ["trained"] * len(expected)


@pytest.mark.slow
def test_table_has_mean_and_std_of_four_cells(permutation):
    rows = _results(permutation.out_dir)
    assert len(permutation.cells) == 4
    for (model, condition), cell in permutation.cells.items():
        accuracies = [float(r["final_test_acc"]) for r in rows if r["model"] == model and r["condition"] == condition]
        assert len(accuracies) == SEEDS and sorted(cell.accuracies) == sorted(accuracies)
        assert cell.mean == pytest.approx(statistics.fmean(accuracies))
        assert cell.std == pytest.approx(statistics.stdev(accuracies))
    headers, table = permutation.table()
    assert headers == ["model", "params", "ordered", "permuted", "drop"]
    assert [r[0] for r in table] == list(MODELS) and [r[1] for r in table] == ["6,442", "6,422"]
    for row, model in zip(table, MODELS):
        ordered, permuted = permutation.cells[(model, "ordered")], permutation.cells[(model, "permuted")]
        assert row[2] == f"{100 * ordered.mean:.2f} ± {100 * ordered.std:.2f}%"
        assert row[3] == f"{100 * permuted.mean:.2f} ± {100 * permuted.std:.2f}%"
        assert row[4] == f"{100 * (ordered.mean - permuted.mean):.2f} pts"
    markdown = (permutation.out_dir / "table.md").read_text()
    table_lines = [
        line for line in markdown.splitlines() if line.startswith("| mlp-tiny") or line.startswith("| cnn-tiny")
    ]
    assert table_lines == ["| " + " | ".join(r) + " |" for r in table]
    assert sum(line.count("±") for line in table_lines) == 4
    info = json.loads((permutation.out_dir / "experiment.json").read_text())
    assert info["kind"] == "permutation" and info["status"] == "complete"
    assert info["summary_table"]["rows"] == table and len(info["runs"]) == 4 * SEEDS


@pytest.mark.slow
def test_one_permutation_for_every_run_and_it_inverts(permutation):
    out = permutation.out_dir
    recorded = json.loads((out / "permutation.json").read_text())
    perm = torch.tensor(recorded["permutation"])
    assert recorded["seed"] == 7 and sorted(recorded["permutation"]) == list(range(784))
    assert torch.equal(perm, make_permutation(784, 7)) and not torch.equal(perm, torch.arange(784))
    inverse = torch.tensor(recorded["inverse"])
    assert torch.equal(perm[inverse], torch.arange(784)) and torch.equal(inverse, invert_permutation(perm))
    for run in sorted((out / "runs").iterdir()):
        used = load_run(run).preprocessing()["permutation"]  # what the trainer itself applied
        if "permuted" in run.name:
            assert used == recorded["permutation"], run.name
        else:
            assert used is None, run.name
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(permute_pixels(permute_pixels(images, perm), inverse), images)


@pytest.mark.slow
def test_figures_are_written(permutation):
    for name, min_width in (("permutation.png", 600), ("accuracy.png", 300)):
        with Image.open(permutation.out_dir / name) as image:
            assert image.format == "PNG" and image.width >= min_width and image.height >= 150, name
            assert len(np.unique(np.asarray(image.convert("L")))) > 10, f"{name} is blank"


@pytest.mark.slow
def test_cli_rerun_skips_complete_runs_and_prints_the_table(permutation, capsys):
    out = permutation.out_dir
    stamps = {p: (p / "summary.json").stat().st_mtime_ns for p in (out / "runs").iterdir()}
    code = main(
        [
            "experiment",
            "permutation",
            "--dataset",
            "mnist-sample",
            "--seeds",
            str(SEEDS),
            "--permutation-seed",
            "7",
            "--limit-train",
            "320",
            "--limit-test",
            "200",
            "--no-progress",
            "-o",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert {p: (p / "summary.json").stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    assert printed.count("already complete, skipped") == 4 * SEEDS
    assert permutation.text() in printed


@pytest.mark.slow
def test_rerun_with_other_settings_refuses_to_mix_runs(permutation):
    info_before = (permutation.out_dir / "experiment.json").read_text()
    with pytest.raises(CnnlabError, match="holds another experiment .*epochs=1"):
        run_permutation(
            MODELS, seeds=SEEDS, permutation_seed=7, out=permutation.out_dir, log=quiet, **{**TINY, "epochs": 2}
        )
    assert (permutation.out_dir / "experiment.json").read_text() == info_before  # checked before writing


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["experiment", "permutation", "--models", "mlp-tiny", "cnn-tinny", "-o", str(tmp_path / "x")]) == 2
    assert "unknown model 'cnn-tinny' (did you mean 'cnn-tiny'" in capsys.readouterr().err
    assert main(["experiment", "permutation", "--seeds", "0", "-o", str(tmp_path / "x")]) == 2
    assert "--seeds must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# ---- sweep --------------------------------------------------------------------------------


def test_parse_settings_types_and_axes():
    settings = parse_settings(
        [
            "lr=0.01,0.1",
            "augment=true",
            "normalize=0.5,0.5",
            "batch-size=64",
            "resize=none",
            'model_options={"batch_norm": true}',
            "lr=0.1",
        ]
    )
    assert settings == {
        "lr": [0.01, 0.1],
        "augment": [True],
        "normalize": ["0.5,0.5"],
        "batch_size": [64],
        "resize": [None],
        "model_options": [{"batch_norm": True}],
    }
    assert parse_settings(["normalize=none", "normalize=dataset"]) == {"normalize": ["none", "dataset"]}
    for item, message in [
        ("lrr=0.1", "unknown option 'lrr' (did you mean 'lr'"),
        ("seed=3", "set seed with --seeds"),
        ("lr", "expects KEY=VALUE"),
        ("lr=fast", "lr takes a float value, e.g. lr=0.01"),
        ("augment=maybe", "augment takes a bool value"),
    ]:
        with pytest.raises(CnnlabError, match=re.escape(message)):
            parse_settings([item])


def test_grid_points_name_what_varies():
    points = grid_points(["mlp-tiny", "convnet"], 2, {"lr": [0.01, 0.1], "batch_size": [64]})
    assert [p.name for p in points][:4] == [
        "mlp-tiny-lr=0.01-seed0",
        "mlp-tiny-lr=0.01-seed1",
        "mlp-tiny-lr=0.1-seed0",
        "mlp-tiny-lr=0.1-seed1",
    ]
    assert len(points) == 8 and len({p.name for p in points}) == 8
    assert points[-1].options == {"model": "convnet", "lr": 0.1, "batch_size": 64, "seed": 1}


@pytest.mark.slow
def test_sweep_continues_where_it_stopped(tmp_path, capsys):
    out = tmp_path / "sweep"
    common = dict(TINY, epochs=1, recipe="reference", log=quiet)
    first = run_sweep(["mlp-tiny"], seeds=2, settings={"lr": [0.01, 0.05]}, out=out, **common)
    assert first.actions == ["trained"] * 4
    assert [r.name for r in first.records] == [
        "mlp-tiny-lr=0.01-seed0",
        "mlp-tiny-lr=0.01-seed1",
        "mlp-tiny-lr=0.05-seed0",
        "mlp-tiny-lr=0.05-seed1",
    ]
    assert len(first.board.rows) == 4 and (out / "compare.png").is_file() and (out / "table.md").is_file()
    assert [r["lr"] for r in (read_run(p.path).config for p in first.records)] == [0.01, 0.01, 0.05, 0.05]

    # An interrupted sweep: one run never started, one crashed before writing its summary.
    shutil.rmtree(out / "runs" / "mlp-tiny-lr=0.01-seed1")
    (out / "runs" / "mlp-tiny-lr=0.05-seed0" / "summary.json").unlink()
    untouched = out / "runs" / "mlp-tiny-lr=0.05-seed1" / "summary.json"
    stamp = untouched.stat().st_mtime_ns
    second = run_sweep(["mlp-tiny"], seeds=2, settings={"lr": [0.01, 0.05]}, out=out, **common)
    assert second.actions == ["skipped", "trained", "trained", "skipped"]
    assert untouched.stat().st_mtime_ns == stamp
    assert all(r.complete for r in second.records)
    kept = list((out / "runs").glob("mlp-tiny-lr=0.05-seed0.incomplete-*"))  # the crashed run is kept, not overwritten
    assert len(kept) == 1 and (kept[0] / "checkpoints" / "last.pt").is_file()

    # The CLI on the same folder: nothing left to train; ends with the leaderboard.
    code = main(
        [
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
            "--no-progress",
            "-o",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "0 trained, 0 resumed, 4 already complete" in printed
    assert "final acc" in printed and all(f"mlp-tiny-lr={lr}-seed{s}" in printed for lr in (0.01, 0.05) for s in (0, 1))
    info = json.loads((out / "experiment.json").read_text())
    assert info["kind"] == "sweep" and info["status"] == "complete" and len(info["runs"]) == 4


@pytest.mark.slow
def test_an_interrupted_run_is_resumed_not_restarted(tmp_path):
    from cnnlab.experiments import ensure_run
    from cnnlab.runfolder.checkpoint import load_checkpoint, save_atomic
    from cnnlab.training import resolve_config

    config = resolve_config(
        {"model": "mlp-tiny", "epochs": 2, "recipe": "reference", "out": str(tmp_path / "run"), **TINY}
    )
    record, action = ensure_run(config, quiet)
    assert action == "trained" and record.complete and len(record.history) == 2
    # Make it look stopped after epoch 1: no summary, and the last checkpoint at the end of epoch 1.
    (tmp_path / "run" / "summary.json").unlink()
    checkpoint = load_checkpoint(tmp_path / "run", "last.pt")
    save_atomic(
        {**{k: v for k, v in checkpoint.items() if k != "path"}, "epoch": 1, "step": 0},
        tmp_path / "run" / "checkpoints" / "last.pt",
    )
    messages = []
    record, action = ensure_run(config, messages.append)
    assert (
        action == "resumed" and record.complete and messages == [f"resuming the interrupted run in {tmp_path / 'run'}"]
    )
    assert [row["epoch"] for row in record.history] == [1, 2]  # epoch 2 trained again, epoch 1 kept

    # Killed between writing best.pt and last.pt of epoch 1 (what a SIGKILL in a search did): best.pt alone is no
    # state to continue from, so the run trains anew and what it left is kept aside.
    (tmp_path / "run" / "summary.json").unlink()
    best = load_checkpoint(tmp_path / "run", "best.pt")
    save_atomic(
        {**{k: v for k, v in best.items() if k != "path"}, "epoch": 1, "step": 0},
        tmp_path / "run" / "checkpoints" / "best.pt",
    )
    (tmp_path / "run" / "checkpoints" / "last.pt").unlink()
    record, action = ensure_run(config, messages.append)
    assert action == "trained" and record.complete and len(record.history) == 2
    kept = list(tmp_path.glob("run.incomplete-*"))
    assert len(kept) == 1 and (kept[0] / "checkpoints" / "best.pt").is_file()
