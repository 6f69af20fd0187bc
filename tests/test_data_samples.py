"""The embedded samples: shipped in the package, balanced, and drawn from the real data."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data.locate import search_roots

# Pixel means of the whole training sets; a stratified sample of 2,000 lands close to them.
PARENT_MEAN = {"mnist-sample": 0.1307, "fashion-mnist-sample": 0.2860}


@pytest.mark.parametrize("name", ["mnist-sample", "fashion-mnist-sample"])
def test_sample_shapes_balance_and_statistics(name):
    data = load_dataset(name)
    assert data.source == "embedded"
    assert data.train_images.shape == (2000, 1, 28, 28) and data.test_images.shape == (500, 1, 28, 28)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert data.train_images.is_contiguous()
    assert data.train_labels.bincount(minlength=10).tolist() == [200] * 10
    assert data.test_labels.bincount(minlength=10).tolist() == [50] * 10
    assert abs(data.train_images.float().mean().item() / 255 - PARENT_MEAN[name]) < 0.01
    assert data.mean == (PARENT_MEAN[name],)
    # real images, not noise: MNIST/Fashion-MNIST corners are background (near 0)
    assert data.train_images[:, :, 0, 0].float().mean() < 5
    assert len(torch.unique(data.train_images.flatten(1), dim=0)) == 2000  # no duplicates


def test_samples_need_no_files_and_ignore_data_dir(tmp_path):
    assert load_dataset("mnist-sample", data_dir=tmp_path / "does-not-matter", download=False).source == "embedded"
    assert all(not root.exists() for _, root in search_roots())  # nothing was written to the cache


def test_train_and_test_samples_differ():
    data = load_dataset("fashion-mnist-sample")
    train = {bytes(x.numpy()) for x in data.train_images.flatten(1)}
    assert not any(bytes(x.numpy()) in train for x in data.test_images.flatten(1))


def test_damaged_sample_is_a_one_line_error(tmp_path, monkeypatch):
    from cnnlab.data import load
    from cnnlab.errors import DataError

    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "mnist-sample.npz").write_bytes(b"PK\x03\x04 not a zip")
    monkeypatch.setattr(load.resources, "files", lambda package: tmp_path)
    with pytest.raises(
        DataError, match="embedded sample mnist-sample.npz is missing or damaged .* scripts/make_samples.py"
    ):
        load_dataset("mnist-sample")
