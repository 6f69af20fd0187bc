"""Finding, verifying and loading dataset files (all synthetic, all offline)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import catalog, load, load_dataset, locate
from cnnlab.errors import DataError


def assert_same(dataset, fake):
    assert dataset.train_images.shape == (len(fake.train_labels), 1, 28, 28)
    assert dataset.train_images.dtype == torch.uint8 and dataset.train_images.is_contiguous()
    assert dataset.train_labels.dtype == torch.int64
    assert np.array_equal(dataset.train_images[:, 0].numpy(), fake.train_images)
    assert np.array_equal(dataset.train_labels.numpy(), fake.train_labels)
    assert np.array_equal(dataset.test_images[:, 0].numpy(), fake.test_images)
    assert np.array_equal(dataset.test_labels.numpy(), fake.test_labels)


@pytest.mark.parametrize("layout", ["named", "flat", "torchvision"])
@pytest.mark.parametrize("compress", [True, False])
def test_loads_every_layout_gz_or_raw(tmp_path, fake_idx, layout, compress):
    fake = fake_idx(n_train=30, n_test=10)
    folder = fake.write(tmp_path, layout, compress)
    dataset = load_dataset("mnist", data_dir=tmp_path)
    assert_same(dataset, fake)
    assert dataset.source == str(folder)
    assert (dataset.name, dataset.channels, dataset.image_size, dataset.mean) == ("mnist", 1, 28, (0.1307,))
    assert dataset.classes[3] == "3 - three"


def test_images_are_writable_tensors(tmp_path, fake_idx):
    fake_idx().write(tmp_path)
    dataset = load_dataset("mnist", tmp_path)
    dataset.train_images[0, 0, 0, 0] = 1  # frombuffer views of bytes are read-only; the loader copies once


def test_data_dir_beats_env_beats_cache_beats_system(tmp_path, fake_idx, monkeypatch):
    fake = fake_idx()
    roots = {name: tmp_path / name for name in ("arg", "env", "cache", "system")}
    folders = {
        "arg": fake.write(roots["arg"], "named"),
        "env": fake.write(roots["env"], "flat", compress=False),
        "cache": fake.write(roots["cache"] / "cnnlab", "torchvision"),
        "system": fake.write(roots["system"] / "datasets", "named"),
    }
    monkeypatch.setenv("CNNLAB_DATA", str(roots["env"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(roots["cache"]))
    monkeypatch.setenv("XDG_DATA_DIRS", str(roots["system"]))
    assert load_dataset("mnist", data_dir=roots["arg"]).source == str(folders["arg"])
    assert load_dataset("mnist").source == str(folders["env"])
    monkeypatch.delenv("CNNLAB_DATA")
    assert load_dataset("mnist").source == str(folders["cache"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    assert load_dataset("mnist").source == str(folders["system"])


def test_named_folder_beats_flat_files_in_the_same_root(tmp_path, fake_idx):
    fake = fake_idx()
    fake.write(tmp_path, "flat")
    named = fake.write(tmp_path, "named")
    assert load_dataset("mnist", tmp_path).source == str(named)


def test_incomplete_folder_is_skipped_and_reported(tmp_path, fake_idx, monkeypatch):
    fake = fake_idx()
    partial = fake.write(tmp_path / "a", "named")
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    complete = fake.write(tmp_path / "b", "named")
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "b"))
    assert load_dataset("mnist", tmp_path / "a").source == str(complete)
    (complete / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=rf"{partial} \(incomplete, lacks t10k-labels-idx1-ubyte\)"):
        load_dataset("mnist", tmp_path / "a")


def test_missing_data_dir_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"--data-dir '.*nope' is not a folder"):
        load_dataset("mnist", tmp_path / "nope")


def test_checksum_mismatch_names_file_expected_actual_and_fix(tmp_path, fake_idx, monkeypatch):
    good = fake_idx()
    spec = good.register()
    good.write(tmp_path / "good")
    monkeypatch.setenv(
        "CNNLAB_DATA", str(tmp_path / "good")
    )  # a good copy later in the search must not hide the bad one
    other = fake_idx(seed=1, register=False)  # same shapes, different pixels
    folder = other.write(tmp_path / "bad", "named", compress=False)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path / "bad")
    message = str(err.value)
    actual = hashlib.sha256((folder / "train-images-idx3-ubyte").read_bytes()).hexdigest()
    assert message.startswith(
        f"{folder / 'train-images-idx3-ubyte'}: checksum mismatch for mnist train-images-idx3-ubyte"
    )
    assert f"expected sha256 {spec.files[0].sha256}, got {actual};" in message
    assert "delete it and download it again" in message and "--data-dir" in message
    assert "\n" not in message


def test_truncated_raw_file_says_truncated(tmp_path, fake_idx):
    folder = fake_idx(n_train=20).write(tmp_path, "named", compress=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=rf"{path}: checksum mismatch .* \(truncated: 5000 of 15696 bytes\)"):
        load_dataset("mnist", tmp_path)


def test_truncated_gz_file(tmp_path, fake_idx):
    folder = fake_idx().write(tmp_path, "named")
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=rf"{path}: truncated or corrupt gzip file .*download it again"):
        load_dataset("mnist", tmp_path)


def test_gz_recompressed_by_another_tool_passes_on_content(tmp_path, fake_idx):
    fake = fake_idx()
    folder = fake.write(tmp_path, "named", compress=False)
    for raw in list(folder.iterdir()):
        (folder / f"{raw.name}.gz").write_bytes(gzip.compress(raw.read_bytes(), compresslevel=1, mtime=12345))
        raw.unlink()
    assert_same(load_dataset("mnist", tmp_path), fake)


def test_gz_only_sums_verify_gz_and_refuse_raw(tmp_path, fake_idx):
    fake = fake_idx(name="kmnist", register=False)
    fake.register(gz_only=True)
    fake.write(tmp_path / "gz", "torchvision")
    assert_same(load_dataset("kmnist", tmp_path / "gz"), fake)
    folder = fake.write(tmp_path / "raw", "named", compress=False)
    with pytest.raises(
        DataError,
        match=rf"{folder / 'train-images-idx3-ubyte'}: cnnlab knows no checksum .* put the original train-images-idx3-ubyte.gz",
    ):
        load_dataset("kmnist", tmp_path / "raw")


def test_other_datasets_files_in_a_flat_root_are_skipped(tmp_path, fake_idx):
    fake_idx(name="fashion-mnist", seed=1)
    fake_idx(name="mnist", seed=2).write(tmp_path, "flat")
    with pytest.raises(DataError, match=rf"{tmp_path} \(holds mnist, not fashion-mnist\)"):
        load_dataset("fashion-mnist", tmp_path)
    fashion = fake_idx(name="fashion-mnist", seed=1, register=False).write(tmp_path, "named")
    assert load_dataset("fashion-mnist", tmp_path).source == str(fashion)


def test_offline_nothing_found_lists_every_place_and_the_fixes(tmp_path, offline_isolated_data, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    message = str(err.value)
    cache = offline_isolated_data / "cache" / "cnnlab"
    system = offline_isolated_data / "share" / "datasets"
    assert message.startswith("dataset 'fashion-mnist' not found ($CNNLAB_OFFLINE is set, so no download); looked in ")
    for origin, root in (
        ("--data-dir", tmp_path),
        ("$CNNLAB_DATA", tmp_path / "env"),
        ("cache", cache),
        ("system", system),
    ):
        assert f"{origin}: {root / 'fashion-mnist'}, {root / 'FashionMNIST/raw'}, {root}" in message
    assert "--data-dir DIR or $CNNLAB_DATA=DIR (e.g. DIR/fashion-mnist/train-images-idx3-ubyte.gz)" in message
    assert "apt install dataset-fashion-mnist" in message and "unset $CNNLAB_OFFLINE" in message
    assert "\n" not in message


def test_download_false_never_downloads(monkeypatch):
    monkeypatch.delenv("CNNLAB_OFFLINE")
    monkeypatch.setattr(locate, "download", lambda spec: pytest.fail("downloaded"))
    with pytest.raises(DataError, match=r"dataset 'mnist' not found \(download=False\)"):
        load_dataset("mnist", download=False)


def test_verification_is_remembered_until_the_file_changes(tmp_path, fake_idx, monkeypatch):
    folder = fake_idx().write(tmp_path)
    calls = []
    verify = load._verify
    monkeypatch.setattr(load, "_verify", lambda path, *a: calls.append(path.name) or verify(path, *a))
    load_dataset("mnist", tmp_path)
    assert len(calls) == 4
    load_dataset("mnist", tmp_path)
    assert len(calls) == 4
    path = folder / "train-labels-idx1-ubyte.gz"
    os.utime(path, ns=(1, 1))
    load_dataset("mnist", tmp_path)
    assert calls[4:] == ["train-labels-idx1-ubyte.gz"]


def test_labels_out_of_range_are_rejected(tmp_path, fake_idx):
    fake = fake_idx(register=False)
    fake.train_labels[3] = 10
    fake.register()
    fake.write(tmp_path)
    with pytest.raises(DataError, match=r"labels outside 0\.\.9 in mnist"):
        load_dataset("mnist", tmp_path)


def test_mismatched_image_and_label_counts(tmp_path, fake_idx):
    fake = fake_idx(register=False)
    fake.train_labels = fake.train_labels[:-1]
    fake.register()
    folder = fake.write(tmp_path)
    with pytest.raises(DataError, match=rf"{folder / 'train-images-idx3-ubyte.gz'}: 30 images but \(29,\) labels"):
        load_dataset("mnist", tmp_path)


class FakeTorchvisionMNIST:
    """Stands in for torchvision.datasets.MNIST: 'downloads' by writing the fake files into root/MNIST/raw."""

    fake = None
    calls = 0

    def __init__(self, root, train, download):
        assert download
        type(self).calls += 1
        self.fake.write(Path(root), "torchvision")


def test_download_goes_to_the_cache_without_overwriting(tmp_path, fake_idx, offline_isolated_data, monkeypatch):
    import torchvision.datasets

    fake = fake_idx()
    FakeTorchvisionMNIST.fake = fake
    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeTorchvisionMNIST)
    monkeypatch.delenv("CNNLAB_OFFLINE")
    raw = offline_isolated_data / "cache" / "cnnlab" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    mine = raw / "train-labels-idx1-ubyte.gz"
    mine.write_bytes(b"the user's own file")
    # The cache held only part of the set, so a download runs; the user's file stays as it was and is reported.
    with pytest.raises(DataError, match=rf"{mine}: truncated or corrupt gzip"):
        load_dataset("mnist")
    assert mine.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{r.filename}.gz" for r in catalog.DATASETS["mnist"].files)
    assert not [p for p in raw.parent.parent.iterdir() if p.name.startswith(".download")]
    mine.unlink()
    fake.write(raw.parent.parent, "torchvision")
    assert load_dataset("mnist").source == str(raw)


def test_failed_download_is_one_line_with_the_places(tmp_path, monkeypatch):
    import torchvision.datasets

    def unreachable(root, train, download):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirror, got URLError")

    monkeypatch.setattr(torchvision.datasets, "MNIST", unreachable)
    monkeypatch.delenv("CNNLAB_OFFLINE")
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    message = str(err.value)
    assert (
        "downloading mnist with torchvision.datasets.MNIST failed: Error downloading train-images-idx3-ubyte.gz:"
        in message
    )
    assert "looked in cache:" in message and "retry when online" in message and "\n" not in message


def write_fake_cifar(folder: Path, seed: int = 0, per_batch: int = 4):
    """CIFAR-10 python batches as torchvision's cifar-10-batches-py has them; returns (sums, images, labels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sums, images, labels = {}, [], []
    for name in [*catalog.CIFAR_TRAIN_BATCHES, "test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        targets = [int(x) for x in rng.integers(0, 10, per_batch)]
        blob = pickle.dumps({b"batch_label": name.encode(), b"data": data, b"labels": targets})
        (folder / name).write_bytes(blob)
        sums[name] = hashlib.md5(blob).hexdigest()
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(targets)
    return sums, images, labels


def test_cifar_batches_load_when_their_md5s_match(tmp_path, monkeypatch):
    sums, images, labels = write_fake_cifar(tmp_path / "cifar-10-batches-py")
    spec = catalog.DATASETS["cifar10"]
    files = tuple(dataclasses.replace(r, md5=sums[r.filename]) for r in spec.files)
    monkeypatch.setitem(catalog.DATASETS, "cifar10", dataclasses.replace(spec, files=files))
    dataset = load_dataset("cifar10", tmp_path)
    assert dataset.train_images.shape == (20, 3, 32, 32) and dataset.test_images.shape == (4, 3, 32, 32)
    assert np.array_equal(dataset.train_images.numpy(), np.concatenate(images[:5]))
    assert dataset.train_labels.tolist() == sum(labels[:5], [])
    assert dataset.test_labels.tolist() == labels[5]


def test_cifar_batch_with_wrong_md5_is_never_unpickled(tmp_path, monkeypatch):
    write_fake_cifar(tmp_path / "cifar10")
    monkeypatch.setattr(load.pickle, "loads", lambda *a, **k: pytest.fail("unpickled an unverified file"))
    with pytest.raises(
        DataError,
        match=rf"{tmp_path / 'cifar10' / 'data_batch_1'}: checksum mismatch for cifar10 data_batch_1: expected md5 c99cafc152244af753f735de768cd75f",
    ):
        load_dataset("cifar10", tmp_path)
