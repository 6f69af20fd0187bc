"""`cnnlab datasets`: table and JSON, found/not found, checksum state, never a download."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli.main import main
from cnnlab.data import locate


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    monkeypatch.delenv("CNNLAB_OFFLINE")  # even when allowed, listing must not download
    monkeypatch.setattr(locate, "download", lambda spec: pytest.fail(f"`cnnlab datasets` downloaded {spec.name}"))


def run_json(capsys, *args) -> dict[str, dict]:
    assert main(["datasets", "--format", "json", *args]) == 0
    return {row["name"]: row for row in json.loads(capsys.readouterr().out)}


def test_table_lists_every_dataset_with_sizes_and_state(capsys):
    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "TRAIN", "TEST", "SHAPE", "CLASSES", "CHECKSUM", "FOUND"]
    rows = {line.split()[0]: line.split() for line in lines[1:7]}
    assert rows["mnist"] == ["mnist", "60,000", "10,000", "1x28x28", "10", "not", "checked", "not", "found"]
    assert rows["cifar10"][1:4] == ["50,000", "10,000", "3x32x32"]
    assert rows["mnist-sample"] == ["mnist-sample", "2,000", "500", "1x28x28", "10", "ok", "embedded"]
    assert "--data-dir DIR" in lines[-1]


def test_found_files_are_verified(tmp_path, fake_idx, capsys):
    folder = fake_idx().write(tmp_path)
    rows = run_json(capsys, "--data-dir", str(tmp_path))
    assert rows["mnist"]["found"] == str(folder) and rows["mnist"]["origin"] == "--data-dir"
    assert rows["mnist"]["checksum"] == "ok"
    assert rows["fashion-mnist"]["found"] == "not found" and rows["fashion-mnist"]["checksum"] == "not checked"
    assert rows["fashion-mnist-sample"]["checksum"] == "ok"
    assert set(rows["kmnist"]) >= {"train_size", "test_size", "channels", "image_size", "classes", "licence"}


def test_mismatch_is_shown_with_the_reason(tmp_path, fake_idx, capsys):
    fake_idx()
    folder = fake_idx(seed=5, register=False).write(tmp_path)
    rows = run_json(capsys, "--data-dir", str(tmp_path))
    assert rows["mnist"]["checksum"] == "mismatch" and rows["mnist"]["found"] == str(folder)
    assert rows["mnist"]["note"].startswith(f"{folder / 'train-images-idx3-ubyte.gz'}: checksum mismatch")
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "mnist: " + rows["mnist"]["note"] in table


def test_cache_copy_is_found(fake_idx, offline_isolated_data, capsys):
    folder = fake_idx().write(offline_isolated_data / "cache" / "cnnlab", "torchvision")
    rows = run_json(capsys)
    assert (rows["mnist"]["found"], rows["mnist"]["origin"], rows["mnist"]["checksum"]) == (str(folder), "cache", "ok")


def test_bad_data_dir_is_a_one_line_error(tmp_path, capsys):
    assert main(["datasets", "--data-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: --data-dir ") and err.count("\n") == 1


def test_unknown_format_is_rejected_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["datasets", "--format", "xml"])
    assert "invalid choice: 'xml' (choose from table, json)" in capsys.readouterr().err.replace(
        "'table', 'json'", "table, json"
    )
