"""Decoded datasets kept in the user cache, so a run does not inflate and hash the gzip files again.

A dataset's four decoded arrays are stored in one file, `<cache>/decoded/<name>-<key>.bin`: a magic
line, a JSON header (the key, each array's shape and dtype, the sha256 of the payload) and the raw
arrays. The key names the source files by path, size, mtime and the catalog sums they were verified
against, so a changed or replaced source file makes a new key and the cache is rebuilt from the
verified source. A cache file is trusted only when its header parses, its key matches and its payload
hashes to the recorded sha256 (about 30 ms for MNIST); anything else is a miss, and the file is
rewritten. Files are written atomically; a cache that cannot be written (read-only, full) is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from cnnlab.data import locate
from cnnlab.data.catalog import DatasetSpec
from cnnlab.files import write_bytes_atomic

MAGIC = b"cnnlab decoded dataset v1\n"
_DTYPES = ("uint8", "int64")  # the only dtypes a dataset's arrays have; nothing else is read back
_MAX_HEADER = 1 << 16


def folder() -> Path:
    return locate.cache_dir() / "decoded"


def key(spec: DatasetSpec, paths: tuple[Path, ...]) -> dict:
    """What the decoded arrays depend on: each source file's identity and the sums it was checked against."""
    files = []
    for path, resource in zip(paths, spec.files):
        stat = path.stat()
        files.append(
            {
                "path": str(path.absolute()),
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "ctime_ns": stat.st_ctime_ns,
                "inode": stat.st_ino,
                "sums": [resource.sha256, resource.md5, list(resource.gz_sha256), list(resource.gz_md5)],
            }
        )
    return {"dataset": spec.name, "image_size": spec.image_size, "channels": spec.channels, "files": files}


def path_for(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return folder() / f"{key['dataset']}-{digest}.bin"


def read(key: dict) -> tuple[np.ndarray, ...] | None:
    """The cached arrays for `key` (writable, sharing one buffer), or None when absent or not intact."""
    path = path_for(key)
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            length = int.from_bytes(f.read(8), "little")
            if not 0 < length <= _MAX_HEADER:
                return None
            header = json.loads(f.read(length))
            payload = bytearray(os.fstat(f.fileno()).st_size - f.tell())
            if f.readinto(payload) != len(payload):
                return None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    try:
        if header["key"] != key or hashlib.sha256(payload).hexdigest() != header["sha256"]:
            return None
        arrays, offset = [], 0
        for entry in header["arrays"]:
            if entry["dtype"] not in _DTYPES:
                return None
            dtype, shape = np.dtype(entry["dtype"]), tuple(int(n) for n in entry["shape"])
            size = int(np.prod(shape)) * dtype.itemsize
            arrays.append(np.frombuffer(payload, dtype, int(np.prod(shape)), offset).reshape(shape))
            offset += size
        if offset != len(payload) or len(arrays) != 4:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    return tuple(arrays)


def write(key: dict, arrays: tuple[np.ndarray, ...]) -> None:
    """Store `arrays` under `key`, atomically; a cache that cannot be written is left alone."""
    arrays = tuple(np.ascontiguousarray(a) for a in arrays)
    payload = b"".join(a.tobytes() for a in arrays)
    header = json.dumps(
        {
            "key": key,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "arrays": [{"shape": list(a.shape), "dtype": str(a.dtype)} for a in arrays],
        }
    ).encode()
    try:
        folder().mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path_for(key), MAGIC + len(header).to_bytes(8, "little") + header + payload)
    except OSError:
        pass  # the cache only saves time; the run goes on from the verified source
