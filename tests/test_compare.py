"""`cnnlab compare`: a leaderboard over good, incomplete and non-run folders."""

import csv
import io
import json
import re
import shutil

import pytest

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.experiments import format_leaderboard, leaderboard, plot_leaderboard, read_run
from cnnlab.experiments.plots import compare_figure
from cnnlab.experiments.runs import write_experiment_file
from cnnlab.training import TrainConfig, train

TINY = dict(dataset="mnist-sample", limit_train=320, limit_test=200, progress=False, recipe="reference")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two good runs, a crashed copy (no summary.json), a 'running' one, a non-run folder, a file."""
    root = tmp_path_factory.mktemp("compare")
    one = train(TrainConfig(model="mlp-tiny", epochs=1, batch_size=64, lr=0.05, out=str(root / "mlp-1ep"), **TINY))
    two = train(TrainConfig(model="cnn-tiny", epochs=2, batch_size=64, lr=0.05, out=str(root / "cnn-2ep"), **TINY))
    crashed = root / "crashed"
    shutil.copytree(two.run_dir, crashed)
    (crashed / "summary.json").unlink()
    running = root / "running"
    shutil.copytree(one.run_dir, running)
    summary = json.loads((running / "summary.json").read_text())
    (running / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not a run")
    (root / "file.txt").write_text("a file")
    return {"root": root, "one": one, "two": two}


def test_records_know_what_each_folder_is(folders):
    root = folders["root"]
    assert read_run(root / "mlp-1ep").status == "complete"
    crashed = read_run(root / "crashed")
    assert crashed.status == "incomplete" and "after 2/2 epochs" in crashed.reason and len(crashed.history) == 2
    assert crashed.state == "stopped" and read_run(root / "mlp-1ep").state == "complete"
    assert read_run(root / "running").reason == "status 'running'"
    assert read_run(root / "notes").reason == "no config.json or summary.json"
    assert read_run(root / "file.txt").reason == "not a folder"
    assert read_run(root / "nowhere").reason == "no such file or folder"


def test_leaderboard_rows_and_sorting(folders):
    root = folders["root"]
    board = leaderboard([str(root / "*"), str(root / "nowhere")])
    assert sorted(r["run"] for r in board.rows) == ["cnn-2ep", "mlp-1ep"]
    assert {str(r.path.name): r.status for r in board.others} == {
        "crashed": "incomplete",
        "running": "incomplete",
        "notes": "not a run",
        "file.txt": "not a run",
        "nowhere": "not a run",
    }
    by_name = {r["run"]: r for r in board.rows}
    summary = folders["two"].summary
    cnn = by_name["cnn-2ep"]
    assert (cnn["model"], cnn["dataset"], cnn["recipe"], cnn["epochs"]) == ("cnn-tiny", "mnist-sample", "reference", 2)
    assert cnn["params"] == 6422 and cnn["macs"] == summary["macs"] > 0
    assert cnn["final_test_acc"] == summary["final_test_acc"] and cnn["best_test_acc"] == summary["best_test_acc"]
    assert cnn["total_seconds"] == summary["total_seconds"] and cnn["images_per_s"] == summary["mean_images_per_s"]
    assert cnn["device"] == "cpu"
    accuracies = [r["final_test_acc"] for r in board.rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert [r["params"] for r in leaderboard([root / "mlp-1ep", root / "cnn-2ep"], "params").rows] == [6422, 6442]
    seconds = [r["total_seconds"] for r in leaderboard([root / "mlp-1ep", root / "cnn-2ep"], "time").rows]
    assert seconds == sorted(seconds)
    with pytest.raises(CnnlabError, match=re.escape("unknown --sort key 'acc' (did you mean")):
        leaderboard([root / "mlp-1ep"], "acc")


def test_formats(folders):
    root = folders["root"]
    board = leaderboard([root / "mlp-1ep", root / "cnn-2ep", root / "crashed", root / "notes"])
    acc = f"{100 * folders['two'].summary['final_test_acc']:.2f}%"

    text = format_leaderboard(board, "table")
    lines = text.splitlines()
    assert lines[0].split() == [
        "run",
        "model",
        "dataset",
        "recipe",
        "epochs",
        "params",
        "MACs",
        "best",
        "acc",
        "final",
        "acc",
        "seconds",
        "images/s",
        "device",
    ]
    assert "cnn-2ep" in text and acc in text and "6,422" in text
    assert "not compared (2):" in text and "crashed  (incomplete: stopped after 2/2 epochs" in text
    assert "notes  (not a run: no config.json or summary.json)" in text

    markdown = format_leaderboard(board, "md")
    assert markdown.splitlines()[0].startswith("| run | model | dataset |")
    assert markdown.splitlines()[1].startswith("|---|---|") and "- `" in markdown

    rows = list(csv.DictReader(io.StringIO(format_leaderboard(board, "csv"))))
    assert [r["status"] for r in rows] == ["complete", "complete", "incomplete", "not a run"]
    assert (
        float(next(r for r in rows if r["run"] == "cnn-2ep")["final_test_acc"])
        == folders["two"].summary["final_test_acc"]
    )

    data = json.loads(format_leaderboard(board, "json"))
    assert len(data["runs"]) == 2 and [r["status"] for r in data["not_compared"]] == ["incomplete", "not a run"]
    assert data["not_compared"][0]["reason"].startswith("stopped after 2/2 epochs")


def test_experiment_folder_stands_for_its_runs(folders, tmp_path):
    experiment = tmp_path / "exp"
    shutil.copytree(folders["one"].run_dir, experiment / "runs" / "a")
    write_experiment_file(experiment, {"kind": "sweep", "runs": ["runs/a", "runs/b"]})
    board = leaderboard([experiment])
    assert [r["run"] for r in board.rows] == ["a"]
    assert [(r.name, r.status) for r in board.others] == [("b", "not a run")]


def test_plot(folders, tmp_path):
    root = folders["root"]
    board = leaderboard([root / "mlp-1ep", root / "cnn-2ep"])
    figure = compare_figure(board.curves())
    time_ax, params_ax, curve_ax = figure.axes
    assert len(time_ax.collections[0].get_offsets()) == 2 and len(params_ax.collections[0].get_offsets()) == 2
    assert sorted(len(line.get_xdata()) for line in curve_ax.get_lines()) == [1, 2]  # epochs per run
    assert {t.get_text() for t in time_ax.texts} == {"mlp-1ep", "cnn-2ep"}
    path = plot_leaderboard(board, tmp_path / "compare.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(CnnlabError, match="no complete run"):
        compare_figure([])


def test_cli(folders, tmp_path, capsys):
    root = folders["root"]
    assert main(["compare", str(root / "*"), "--format", "json", "--plot", str(tmp_path / "c.png")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["runs"]) == 2 and len(data["not_compared"]) == 4 and (tmp_path / "c.png").is_file()
    assert main(["compare", str(root / "notes"), str(root / "crashed")]) == 1
    captured = capsys.readouterr()
    assert "not compared (2)" in captured.out and "no complete run among 2 folder(s)" in captured.err
    assert main(["compare", str(root / "mlp-1ep"), "--sort", "bogus"]) == 2
    assert "unknown --sort key 'bogus'" in capsys.readouterr().err
