"""Your own data and your own model through every command: train -> eval -> predict -> export -> serve ->
load_run, the trust refusal, a tampered model copy, and a dataset folder that moved or changed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.runs.load import load_run
from cnnlab.training import train

NET = """
import os
from pathlib import Path

import torch
from torch import nn

if os.environ.get("NET_MARKER"):  # proves when this file is executed
    Path(os.environ["NET_MARKER"]).write_text("executed")


class TinyNet(nn.Module):
    def __init__(self, in_channels, num_classes, width=8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(width * 4, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))
"""

CLASSES = ("dark", "light", "stripes")


def _picture(kind: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    noise = rng.integers(0, 40, (size, size, 3))
    if kind == "dark":
        base = np.full((size, size, 3), 20)
    elif kind == "light":
        base = np.full((size, size, 3), 200)
    else:
        base = np.zeros((size, size, 3))
        base[:, ::4] = 230
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_folder(root: Path, per_class: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(_picture(kind, rng)).save(root / kind / f"{i:03d}.png")
    (root / ".DS_Store").write_bytes(b"\0\1junk")
    return root


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A folder of RGB pictures in three classes, a model file, and one run of them trained through the CLI."""
    base = tmp_path_factory.mktemp("own")
    pictures = write_folder(base / "pictures")
    net = base / "net.py"
    net.write_text(NET)
    run = base / "runs" / "tiny"
    code = main(
        ["train", f"{net}:TinyNet", "--dataset", str(pictures), "--epochs", "2", "--no-progress", "--out", str(run)]
    )
    assert code == 0
    return {"base": base, "pictures": pictures, "net": net, "run": run}


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """Each test reopens runs as a new process would: no model code loaded by the training before it."""
    from cnnlab.models import custom

    monkeypatch.setattr(custom, "_entries", {})


def _error(capsys, argv) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_the_run_records_its_data_and_keeps_its_model(own):
    config = json.loads((own["run"] / "config.json").read_text())["config"]
    copy = own["run"] / "model" / "net.py"
    assert copy.read_bytes() == own["net"].read_bytes()
    assert config["model"] == f"{own['net'].resolve()}:TinyNet" or config["model"] == f"{own['net']}:TinyNet"
    assert config["model_sha256"] == hashlib.sha256(own["net"].read_bytes()).hexdigest()
    origin = config["data_origin"]
    assert origin["classes"] == list(CLASSES)
    assert origin["path"] == str(own["pictures"].absolute())
    assert origin["channels"] == 3 and origin["image_size"] == 16
    assert origin["train_size"] + origin["test_size"] == 72
    assert len(origin["sha256"]) == 64
    summary = json.loads((own["run"] / "summary.json").read_text())
    assert summary["status"] == "complete"


def test_reopening_needs_trust_and_never_runs_the_code_without_it(own, tmp_path):
    """As a user would meet it, in fresh processes: without --trust-code nothing of the run's code executes."""
    marker = tmp_path / "executed"
    env = {**os.environ, "NET_MARKER": str(marker)}
    for argv in (
        ["eval", str(own["run"])],
        ["export", str(own["run"]), "-o", str(tmp_path / "m.onnx")],
        ["summary", str(own["run"])],
    ):
        done = subprocess.run([sys.executable, "-m", "cnnlab", *argv], env=env, capture_output=True, text=True)
        err = done.stderr.strip()
        assert done.returncode != 0 and "--trust-code" in err and len(err.splitlines()) == 1, err
    assert not marker.exists()
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "eval", str(own["run"]), "--trust-code"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert marker.exists()  # the copy in RUN/model/ is what ran


def test_load_run_needs_trust(own):
    with pytest.raises(CnnlabError, match="trust_code=True"):
        load_run(own["run"])
    trained = load_run(own["run"], trust_code=True)
    assert trained.classes == list(CLASSES)
    images = torch.from_numpy(np.stack([_picture(k, np.random.default_rng(5)) for k in CLASSES])).permute(0, 3, 1, 2)
    probabilities = trained.predict(images.contiguous())
    assert probabilities.shape == (3, 3)
    assert torch.allclose(probabilities.sum(1), torch.ones(3))


def test_eval_and_predict_with_trust(own, capsys, tmp_path):
    assert main(["eval", str(own["run"]), "--trust-code"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out.lower() or "%" in out
    picture = tmp_path / "one.png"
    Image.fromarray(_picture("stripes", np.random.default_rng(3))).save(picture)
    assert main(["predict", str(own["run"]), str(picture), "--trust-code"]) == 0
    assert any(name in capsys.readouterr().out for name in CLASSES)
    assert main(["summary", str(own["run"]), "--trust-code"]) == 0
    out = capsys.readouterr().out
    assert f"input (1, 3, 16, 16), output (1, {len(CLASSES)})" in out  # the run's channels, image size and classes


@pytest.mark.slow
def test_export_of_your_own_model_is_verified(own, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(own["run"]), "--trust-code", "-o", str(out)]) == 0, capsys.readouterr().err
    assert out.is_file()
    script = tmp_path / "tiny.pt"
    assert main(["export", str(own["run"]), "--trust-code", "--format", "torchscript", "-o", str(script)]) == 0


def test_a_tampered_model_copy_is_refused_before_it_runs(own, tmp_path, monkeypatch):
    copy = tmp_path / "copied-run"
    shutil.copytree(own["run"], copy)
    source = copy / "model" / "net.py"
    source.write_text(source.read_text() + "\nraise SystemExit('tampered code ran')\n")
    with pytest.raises(CnnlabError, match="sha256"):
        load_run(copy, trust_code=True)


def test_a_moved_or_changed_dataset_folder_is_one_line(own, capsys, tmp_path):
    moved = own["base"] / "pictures-moved"
    shutil.move(own["pictures"], moved)
    try:
        code, err = _error(capsys, ["eval", str(own["run"]), "--trust-code"])
        assert code != 0 and len(err.splitlines()) == 1 and "moved" in err, err
    finally:
        shutil.move(moved, own["pictures"])
    extra = own["pictures"] / "dark" / "extra.png"
    Image.fromarray(_picture("light", np.random.default_rng(9))).save(extra)
    try:
        code, err = _error(capsys, ["eval", str(own["run"]), "--trust-code"])
        assert code != 0 and len(err.splitlines()) == 1 and "changed" in err, err
    finally:
        extra.unlink()
    assert main(["eval", str(own["run"]), "--trust-code"]) == 0


def test_serve_predicts_with_your_own_model(own):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    import cnnlab
    from cnnlab.runs.load import trusting_code

    buffer = io.BytesIO()
    Image.fromarray(_picture("light", np.random.default_rng(1))).save(buffer, format="PNG")
    with trusting_code():
        client = TestClient(cnnlab.create_app([own["run"].parent]), base_url="http://127.0.0.1")
        runs = client.get("/api/runs").json()["runs"]
        run_id = next(r["id"] for r in runs if r["name"] == "tiny")
        response = client.post(
            "/api/predict",
            params={"id": run_id, "center": "0", "invert": "0"},
            content=buffer.getvalue(),
            headers={"Content-Type": "image/png"},
        )
    assert response.status_code == 200, response.text
    assert len(response.json()["probabilities"]) == 3


def test_python_api_with_a_class_and_an_instance(own, tmp_path, monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(own["base"]))
    module = importlib.import_module("net")
    result = train(
        model=module.TinyNet, dataset=str(own["pictures"]), epochs=1, progress=False, out=str(tmp_path / "a")
    )
    assert (result.run_dir / "model" / "net.py").is_file()
    assert load_run(result.run_dir, trust_code=True).classes == list(CLASSES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(
            model=module.TinyNet(3, 3), dataset=str(own["pictures"]), epochs=1, progress=False, out=str(tmp_path / "b")
        )
    assert any("cannot be reopened" in str(w.message) for w in caught)
    with pytest.raises(CnnlabError, match="cannot be reopened"):
        load_run(result.run_dir, trust_code=True)


def test_a_keras_npz_trains_like_a_folder(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (60, 12, 12), dtype=np.uint8)
    y = np.arange(60) % 3
    x[y == 1] //= 4
    np.savez(tmp_path / "digits.npz", x_train=x[:48], y_train=y[:48], x_test=x[48:], y_test=y[48:])
    result = train(
        model="mlp-tiny",
        dataset=str(tmp_path / "digits.npz"),
        image_size=28,
        epochs=1,
        progress=False,
        out=str(tmp_path / "r"),
    )
    config = json.loads((result.run_dir / "config.json").read_text())["config"]
    assert config["data_origin"]["kind"] == "npz"
    assert (config["data_origin"]["train_size"], config["data_origin"]["test_size"]) == (48, 12)
    assert load_run(result.run_dir).classes == ["0", "1", "2"]


def test_a_sweep_of_your_own_model_and_data_finds_its_runs_again(own, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(own["base"])  # relative names, as typed: the runs record them absolute
    argv = ["sweep", "--models", "net.py:TinyNet", "convnet", "--dataset", "pictures", "--epochs", "1"]
    argv += ["--out", str(tmp_path / "sweep"), "--resize", "28"]
    assert main(argv) == 0, capsys.readouterr().err
    first = (tmp_path / "sweep" / "runs" / "net-TinyNet-seed0" / "summary.json").read_bytes()
    assert main(argv) == 0, capsys.readouterr().err  # complete runs are found and kept, not refused or redone
    assert (tmp_path / "sweep" / "runs" / "net-TinyNet-seed0" / "summary.json").read_bytes() == first


def test_a_memory_mapped_dataset_trains_exactly_like_one_in_memory(own, tmp_path, monkeypatch):
    """With a held-out validation split too: the mapped rows are gathered per batch, never copied whole."""
    from cnnlab.data import imported
    from cnnlab.data.batches import Batches

    options = dict(dataset=str(own["pictures"]), epochs=2, val_split=12, progress=False, seed=3, deterministic=True)
    in_memory = train(model="convnet", resize=28, out=str(tmp_path / "memory"), **options)
    gathered = []
    original = Batches.__init__

    def spy(self, images, labels, *args, rows=None, **kwargs):
        gathered.append(rows is not None)
        original(self, images, labels, *args, rows=rows, **kwargs)

    monkeypatch.setattr(imported, "_should_map", lambda mmap, size: True)
    monkeypatch.setattr(Batches, "__init__", spy)
    mapped = train(model="convnet", resize=28, out=str(tmp_path / "mapped"), **options)
    assert gathered.count(True) == 2  # the training rows and the validation rows
    assert [r["train_loss"] for r in mapped.history] == [r["train_loss"] for r in in_memory.history]
    assert mapped.summary["best_val_acc"] == in_memory.summary["best_val_acc"]
