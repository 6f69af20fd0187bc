"""Decode IDX files (the MNIST format) into numpy arrays with one `frombuffer`, never per sample.

Layout: two zero bytes, a type code, the number of dimensions, then each
dimension as a big-endian uint32, then the data in C order.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import DataError

# IDX type code -> numpy dtype (multi-byte types are big-endian on disk).
_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def gunzip(data: bytes, source: str | Path) -> bytes:
    """Decompress gzip `data`; a truncated or damaged stream raises DataError naming `source`."""
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(
            f"{source}: truncated or corrupt gzip file ({err}); delete it and download it again, "
            "or point --data-dir at a good copy"
        ) from None


def parse_idx(data: bytes | bytearray | memoryview, source: str | Path = "<bytes>") -> np.ndarray:
    """The array stored in uncompressed IDX `data` (a view of `data`, read-only for bytes)."""
    header = bytes(data[:4])
    if len(header) < 4 or header[:2] != b"\0\0" or header[2] not in _DTYPES or header[3] == 0:
        raise DataError(f"{source}: not an IDX file (header {header.hex() or 'empty'}); expected an MNIST-format file")
    dtype, ndim = _DTYPES[header[2]], header[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"{source}: truncated IDX header ({len(data)} bytes); delete it and download it again")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{source}: {what}: header says shape {shape} ({expected} bytes) but the file has {len(data)} bytes; "
            "delete it and download it again"
        )
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzipped or not (told apart by content, not by name). No checksum check."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        data = gunzip(data, path)
    return parse_idx(data, path)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of `array` (the inverse of `parse_idx`), for tests and tools."""
    codes = {dtype: code for code, dtype in _DTYPES.items()}
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()
