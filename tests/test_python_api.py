"""The top-level Python API a notebook uses: what `cnnlab inspect` and `cnnlab compare` do, without a subprocess."""

from __future__ import annotations

import json

import pytest

import cnnlab


def test_every_public_name_resolves():
    for name in cnnlab.__all__:
        assert getattr(cnnlab, name) is not None, name


def test_inspect_a_loaded_run_from_python(trained_run, tmp_path):
    pytest.importorskip("captum")
    run = cnnlab.load_run(trained_run)  # loaded once, then passed to each
    filters = cnnlab.inspect_filters(run, out=tmp_path)
    features = cnnlab.inspect_features(run, index=0, out=tmp_path)
    saliency = cnnlab.inspect_saliency(run, indices=[0], out=tmp_path)
    mistakes, paths = cnnlab.inspect_mistakes(run, top=4, pairs=2, out=tmp_path)
    written = [*filters, *features, *saliency, *paths]
    assert filters and features and saliency and paths
    assert all(path.parent == tmp_path and path.suffix == ".png" and path.stat().st_size > 0 for path in written)
    assert not (trained_run / "inspect").exists()  # `out` was honoured
    assert cnnlab.inspect_filters(trained_run, out=tmp_path / "again")  # a run folder works as well


def test_compare_runs_from_python(trained_run, tmp_path):
    board = cnnlab.leaderboard([trained_run, tmp_path])  # tmp_path: a folder that is not a run
    assert [row["model"] for row in board.rows] == ["convnet"] and len(board.others) == 1
    rows = json.loads(cnnlab.format_leaderboard(board, "json"))["runs"]
    assert rows[0]["path"] == str(trained_run)
    assert "convnet" in cnnlab.format_leaderboard(board, "md")
    figure = cnnlab.plot_leaderboard(board, tmp_path / "compare.png")
    assert figure.is_file() and figure.stat().st_size > 0
    with pytest.raises(cnnlab.CnnlabError, match="--sort key"):
        cnnlab.leaderboard([trained_run], sort="acuracy")
