"""IDX decoding: gz and raw, every header problem named."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cnnlab.data.idx import encode_idx, parse_idx, read_idx
from cnnlab.errors import DataError


def test_roundtrip_uint8_images_and_labels():
    images = np.arange(3 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(3, 28, 28)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    assert np.array_equal(parse_idx(encode_idx(images)), images)
    assert np.array_equal(parse_idx(encode_idx(labels)), labels)
    header = encode_idx(images)[:16]
    assert header == bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28])  # the MNIST header, big-endian


def test_multibyte_types_are_big_endian():
    values = np.array([[1, -2], [300, -40000]], dtype=np.int32)
    data = encode_idx(values)
    assert data[2] == 0x0C and data[-4:] == (-40000).to_bytes(4, "big", signed=True)
    assert np.array_equal(parse_idx(data), values)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_gz_and_raw(tmp_path, compress):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    data = encode_idx(images)
    path = tmp_path / ("x.gz" if compress else "x")
    path.write_bytes(gzip.compress(data) if compress else data)
    assert np.array_equal(read_idx(path), images)


def test_truncated_data_names_shape_and_sizes():
    data = encode_idx(np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(
        DataError,
        match=r"f\.idx: truncated: header says shape \(4, 28, 28\) \(3152 bytes\) but the file has 3000 bytes",
    ):
        parse_idx(data[:3000], "f.idx")


def test_trailing_bytes_and_bad_headers():
    data = encode_idx(np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="has trailing bytes"):
        parse_idx(data + b"\0", "f")
    with pytest.raises(DataError, match="not an IDX file"):
        parse_idx(b"PK\3\4" + data, "f")
    with pytest.raises(DataError, match="not an IDX file"):
        parse_idx(b"", "f")
    with pytest.raises(DataError, match="truncated IDX header"):
        parse_idx(data[:6], "f")


def test_truncated_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros((2, 28, 28), np.uint8)))[:-10])
    with pytest.raises(DataError, match=r"t\.gz: truncated or corrupt gzip file"):
        read_idx(path)
