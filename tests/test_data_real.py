"""The real MNIST and Fashion-MNIST files; skipped unless $CNNLAB_TEST_DATA names a folder holding them."""

from __future__ import annotations

import os

import pytest

from cnnlab.data import load_dataset

REAL = os.environ.get("CNNLAB_TEST_DATA")
pytestmark = pytest.mark.skipif(not REAL, reason="set CNNLAB_TEST_DATA to a folder with mnist/ and fashion-mnist/")


@pytest.mark.parametrize("name, mean", [("mnist", 0.1307), ("fashion-mnist", 0.2860)])
def test_real_dataset_loads_verified(name, mean):
    data = load_dataset(name, data_dir=REAL, download=False)
    assert data.train_images.shape == (60_000, 1, 28, 28) and data.test_images.shape == (10_000, 1, 28, 28)
    assert len(data.train_labels) == 60_000 and len(data.test_labels) == 10_000
    assert abs(data.train_images.float().mean().item() / 255 - mean) < 5e-4
    if name == "fashion-mnist":
        assert data.train_labels.bincount().tolist() == [6_000] * 10
        assert data.test_labels.bincount().tolist() == [1_000] * 10
