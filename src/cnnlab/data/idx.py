"""Decode IDX files (the MNIST format) into numpy arrays with one `frombuffer`, never per sample.

Layout: two zero bytes, a type code, the number of dimensions, then each
dimension as a big-endian uint32, then the data in C order.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import DataError

# IDX type code -> numpy dtype (multi-byte types are big-endian on disk).
_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # bytes read (and decompressed) per step: memory stays near the output size


def gunzip(data: bytes, source: str | Path) -> bytes:
    """Decompress gzip `data`; a truncated or damaged stream raises DataError naming `source`."""
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as err:
        raise _corrupt(source, str(err)) from None


def _corrupt(source: str | Path, why: str) -> DataError:
    return DataError(
        f"{source}: truncated or corrupt gzip file ({why}); delete it and download it again, "
        "or point --data-dir at a good copy"
    )


def read_bounded(
    path: str | Path,
    limit: int,
    what: str,
    stored_hashes: Iterable = (),
    content_hashes: Iterable = (),
    gzipped: bool | None = None,
) -> bytes:
    """The content of `path`, gunzipped as a stream, never over `limit` bytes.

    `gzipped` None tells gzip apart by content; True or False is the caller's
    decision (e.g. by the file name).
    Each hashlib object in `stored_hashes` sees the bytes on disk, each in
    `content_hashes` the decompressed bytes, chunk by chunk as they are read. A
    file whose content passes `limit` is abandoned there, so a small gzip that
    expands to gigabytes costs a fraction of a second and `limit` bytes of memory.
    `what` names the file it should be, for the message. OSError (permission
    denied, ...) is left to the caller: it is the environment, not the file.
    """
    path = Path(path)
    stored_hashes, content_hashes = list(stored_hashes), list(content_hashes)
    out = bytearray()

    def add(piece: bytes, packed: bool) -> None:
        out.extend(piece)
        for h in content_hashes:
            h.update(piece)
        if len(out) > limit:
            verb = "expands past" if packed else "is larger than"
            raise DataError(f"{path}: {verb} {limit:,} bytes: not the dataset file {what}; delete it")

    with open(path, "rb") as f:
        first = f.read(_CHUNK)
        packed = first[:2] == _GZIP_MAGIC if gzipped is None else gzipped
        member = zlib.decompressobj(16 + zlib.MAX_WBITS) if packed else None
        chunk = first
        while chunk:
            for h in stored_hashes:
                h.update(chunk)
            if not packed:
                add(chunk, False)
            data = chunk if packed else b""
            while data and member is not None:  # data is left empty unless packed, when member is set
                if member.eof:  # another gzip member may follow, after optional zero padding (as gzip does)
                    data = data.lstrip(b"\0")
                    if not data:
                        break
                    member = zlib.decompressobj(16 + zlib.MAX_WBITS)
                try:
                    add(member.decompress(data, _CHUNK), True)
                except zlib.error as err:
                    raise _corrupt(path, str(err)) from None
                data = member.unused_data if member.eof else member.unconsumed_tail
            chunk = f.read(_CHUNK)
    if member is not None and not member.eof:  # member is set exactly when packed
        try:
            add(member.flush(), True)
        except zlib.error as err:
            raise _corrupt(path, str(err)) from None
        if not member.eof:
            raise _corrupt(path, "Compressed file ended before the end-of-stream marker was reached")
    return bytes(out)


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


def read_idx(path: str | Path, max_bytes: int = 1 << 30) -> np.ndarray:
    """Read an IDX file, gzipped or not (told apart by content, not by name). No checksum check.

    Content past `max_bytes` is refused, so a gzip bomb cannot fill memory."""
    path = Path(path)
    return parse_idx(read_bounded(path, max_bytes, path.name), path)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of `array` (the inverse of `parse_idx`), for tests and tools."""
    codes = {dtype: code for code, dtype in _DTYPES.items()}
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()
