"""Faster paths give the same results as the plain ones: the decoded-dataset cache, the optimizer
without torch.compile's guards, MACs counted by hooks. (Timings live in benchmarks/, not here.)"""

from __future__ import annotations

import pytest
import torch

from cnnlab.data import cache, load, load_dataset
from cnnlab.runfolder.config import TrainConfig
from cnnlab.training.optim import build_optimizer


def _same(a, b) -> None:
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), name


def _cache_files():
    return sorted(cache.folder().glob("*.bin"))


def test_cache_hit_equals_cache_miss_bit_for_bit(tmp_path, fake_idx, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # never the real cache
    fake_idx(n_train=50, n_test=20).write(tmp_path / "data")
    miss = load_dataset("mnist", tmp_path / "data")
    assert len(_cache_files()) == 1 and str(_cache_files()[0]).startswith(str(tmp_path / "xdg" / "cnnlab"))
    reads = []
    monkeypatch.setattr(load, "_read_verified", lambda *a: reads.append(a))  # a hit must not touch the source
    hit = load_dataset("mnist", tmp_path / "data")
    assert reads == []
    _same(hit, miss)
    assert hit.source == miss.source
    hit.train_images[0, 0, 0, 0] = 1  # writable, like a fresh load


def test_corrupted_cache_file_is_detected_and_rebuilt(tmp_path, fake_idx, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    fake_idx(n_train=50, n_test=20).write(tmp_path / "data")
    fresh = load_dataset("mnist", tmp_path / "data")
    (path,) = _cache_files()
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[-100] ^= 0x01  # one bit of the payload (a test image)
    for damaged in (bytes(flipped), good[:-7], good[:20], b""):
        path.write_bytes(damaged)
        assert (
            cache.read(
                cache.key(
                    load.get_spec("mnist"),
                    load.locate.scan(load.get_spec("mnist"), tmp_path / "data").candidates[0].paths,
                )
            )
            is None
        )
        _same(load_dataset("mnist", tmp_path / "data"), fresh)  # read from the verified source again
        assert path.read_bytes() == good  # and the cache file rewritten


def test_changed_source_file_is_not_served_from_the_cache(tmp_path, fake_idx, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    fake_idx(n_train=50, n_test=20, seed=0).write(tmp_path / "data")
    load_dataset("mnist", tmp_path / "data")
    other = fake_idx(n_train=50, n_test=20, seed=1)  # registers its own sums, as a new catalog would
    other.write(tmp_path / "data")
    reloaded = load_dataset("mnist", tmp_path / "data")
    assert torch.equal(reloaded.train_images[:, 0], torch.from_numpy(other.train_images))


def _train_steps(kind: str, unguarded: bool, optimizer: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))
    config = TrainConfig(optimizer=optimizer, momentum=0.9, nesterov=True, weight_decay=5e-4, lr=0.05)
    opt = build_optimizer(model, config, fused=kind == "fused")
    if not unguarded:  # torch's own class, as a compiled run gets
        opt = type(opt).__mro__[1](model.parameters(), **{k: v for k, v in opt.defaults.items()})
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    opt2 = type(opt)(model.parameters(), **opt.defaults)
    opt2.load_state_dict(opt.state_dict())
    return {
        **model.state_dict(),
        **{
            f"m{i}": v
            for i, v in enumerate(
                s.get("momentum_buffer", s.get("exp_avg")) for s in opt2.state_dict()["state"].values()
            )
        },
    }


def test_optimizer_without_dynamo_guards_matches_torch_bit_for_bit():
    for optimizer in ("sgd", "adam"):
        for kind in ("fused", "plain"):
            ours, theirs = _train_steps(kind, True, optimizer), _train_steps(kind, False, optimizer)
            assert ours.keys() == theirs.keys()
            for name in ours:
                assert torch.equal(ours[name], theirs[name]), (optimizer, kind, name)


# ---- validation split ---------------------------------------------------------------------


def test_stratified_split_is_exact_seeded_and_keeps_the_class_mix():
    from cnnlab.data.split import stratified_split

    labels = torch.arange(1000) % 10
    labels[:100] = 3  # an uneven mix: class 3 is 19% of the set
    keep, held = stratified_split(labels, 100, seed=1)
    assert len(held) == 100 and len(keep) == 900 and not set(keep.tolist()) & set(held.tolist())
    assert torch.equal(torch.bincount(labels[held], minlength=10), torch.bincount(labels, minlength=10) // 10)
    assert torch.equal(stratified_split(labels, 100, seed=1)[1], held)
    assert not torch.equal(stratified_split(labels, 100, seed=2)[1], held)


@pytest.mark.slow
def test_val_split_selects_on_validation_and_reports_both(tmp_path):
    import csv
    import json

    from cnnlab.training import train

    result = train(
        model="cnn-tiny",
        dataset="mnist-sample",
        epochs=2,
        val_split=200,
        seed=3,
        progress=False,
        out=str(tmp_path / "run"),
    )
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    from cnnlab.runfolder.layout import METRIC_COLUMNS

    assert list(rows[0]) == METRIC_COLUMNS + ["val_loss", "val_acc"]  # existing columns first, unchanged
    assert all(r["val_acc"] and r["test_acc"] for r in rows)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    best = max(range(2), key=lambda i: (float(rows[i]["val_acc"]), -i))
    assert summary["best_epoch"] == best + 1 and summary["best_val_acc"] == pytest.approx(float(rows[best]["val_acc"]))
    assert summary["best_test_acc"] == pytest.approx(float(rows[best]["test_acc"]))
    assert summary["val_split"] == 200 and result.history[-1]["val_acc"] is not None


def test_val_split_is_validated():
    from cnnlab.errors import CnnlabError
    from cnnlab.runfolder.resolve import resolve_config

    with pytest.raises(CnnlabError, match="val_split must be a positive integer, got 0"):
        resolve_config({"model": "convnet", "val_split": 0})
    with pytest.raises(CnnlabError, match="val_split=300 leaves no training images of limit_train=300"):
        resolve_config({"model": "convnet", "val_split": 300, "limit_train": 300})


# ---- record recipes -------------------------------------------------------------------------


def test_record_recipes_resolve_to_their_model_and_are_listed(capsys):
    from cnnlab.cli.main import main
    from cnnlab.errors import CnnlabError
    from cnnlab.models import model_info
    from cnnlab.runfolder.config import record_recipes
    from cnnlab.runfolder.resolve import resolve_config

    assert {"mnist-99.0", "mnist-99.2", "fashion-mnist-91"} <= set(record_recipes())
    for name, (model, values) in record_recipes().items():
        config = resolve_config({"recipe": name})
        assert config.model == model and config.recipe == name and model_info(model).records[name] == values
        assert {k: getattr(config, k) for k in values} == values
    with pytest.raises(CnnlabError, match="record recipe of model 'fast-cnn', not 'convnet'"):
        resolve_config({"recipe": "mnist-99.2", "model": "convnet"})
    assert main(["recipes", "fast-cnn"]) == 0
    assert "record mnist-99.2 (`cnnlab train --recipe mnist-99.2`)" in capsys.readouterr().out


@pytest.mark.slow
def test_the_executable_skips_only_the_interpreter_teardown(tmp_path):
    """`cnnlab` (console) exits with main's status, after the atexit handlers and with its output flushed."""
    import subprocess
    import sys

    script = (
        "import atexit, sys\n"
        "from cnnlab.cli.main import console\n"
        "atexit.register(lambda: print('atexit ran', flush=True))\n"
        "sys.stdout.write('unflushed ')\n"
        "sys.argv = ['cnnlab', *sys.argv[1:]]\n"
        "console()\n"
    )
    done = subprocess.run([sys.executable, "-c", script, "models"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("unflushed model") and "fast-cnn" in done.stdout
    assert done.stdout.rstrip().endswith("atexit ran")
    failed = subprocess.run(
        [sys.executable, "-c", script, "train", "no-such-model"], capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 2 and failed.stderr.startswith("cnnlab: ") and len(failed.stderr.splitlines()) == 1
    assert "atexit ran" in failed.stdout
