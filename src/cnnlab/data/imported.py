"""Your own data as a cnnlab dataset: a folder of images, a .npz or .csv table, or a Hugging Face dataset.

`load_own(PATH)` imports it once into the decoded-data cache and returns a `Dataset` whose `origin` records
where it came from (path, content sha256, classes, split, sizes, what was skipped) for the run's config.json.

A folder (`imagefolder.py`) is decoded on every core (`decode.py`) straight into its final uint8 array, and
cached under `<cache>/imported/` (`locate.cache_dir()`: `${XDG_CACHE_HOME:-~/.cache}/cnnlab`):

- `<content key>.bin`: a 64-byte prefix (magic, where the header is), the images (N, C, S, S) uint8 at offset
  64, the labels (N,) int64 at the next multiple of 8, then a JSON header (shape, split, sums, the origin
  record). The content key is the sha256 of the folder's content (every image's relative path and sha256)
  and of the options that change decoding (image_size, channels, skip_bad, test_fraction).
- `index/<stat key>.json`: the content key for a stat key, the digest of the folder's path, every image's
  (relative path, size, mtime_ns) and the options. A load whose stat key is indexed reuses the data without
  reading an image (as make and rsync trust size and mtime); otherwise every image is read and hashed, and
  the same content (a copied or moved folder, a touched file) reuses the decoded data; changed content is
  decoded again.

A damaged cache file (bad magic, header, size or sum) is a miss, never a crash; cache files are opened with
`files.open_regular` and written atomically (temp file, fsync, rename), and a cache that cannot be written
(read-only, full) leaves the import in memory. Concurrent imports of one folder (torchrun's ranks) take turns
on a lock file, so the second reuses the first's work.

Memory-mapping: with `mmap=True`, or `mmap=None` and a decoded size above half of the memory this process may
use (the least of /proc/meminfo's MemAvailable, the memory limit of its cgroup and the cgroups above (v2 or v1),
and the soft RLIMIT_AS and RLIMIT_DATA), the image tensors map the cache file instead of reading it: such a
dataset pages in from disk and may exceed memory (its clean pages are page cache, which the kernel reclaims).
The mapping is copy-on-write (`np.memmap(mode="c")`: a write to the tensors stays in this process), except under
a finite RLIMIT_DATA (`ulimit -d`), which counts a private writable mapping in full (measured: a 2.5 GB dataset
failed under a 1.2 GB limit); there it is shared and read-only (`mode="r"`), which the limit does not count,
and a write into the tensors is a crash: cnnlab itself only gathers rows from them (copies). A mapped load checks the header, the file size and the labels' sha256, but not the images'
sha256 on every load (that would read the whole file); a load into memory reads and checks it all.

Tables (.npz/.csv, `tables.py`) have pixels already: they are converted to the asked size and channels and
split, in memory, with no cache. A Hugging Face dataset (`hf.py`) gives encoded images, which go through the
same decoder and cache as a folder's.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
import math
import mmap as _mmap
import os
import resource
import stat
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from cnnlab.data import decode, imagefolder, locate, tables
from cnnlab.data.catalog import DatasetSpec
from cnnlab.data.hf import read_hf
from cnnlab.data.load import Dataset
from cnnlab.data.names import resolve_name
from cnnlab.errors import CnnlabError, DataError
from cnnlab.files import UnsafeFileError, open_regular, read_json, write_json

try:
    import fcntl
except ImportError:  # Windows: imports of one folder at once do not wait for each other
    fcntl = None  # type: ignore[assignment]

VERSION = 1  # of the cache format and of what the decoder makes: a change re-imports everything
MAGIC = b"cnnlab imported images v1\n"
PREFIX = 64  # magic, header offset and length; the images start here
MAX_HEADER = 64 << 20
SEED = 0
HF_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")
TABLE_SUFFIXES = (".npz", ".csv", ".parquet")
MAX_SKIPPED_LISTED = 1000  # the origin (config.json) lists this many skipped images, and counts them all
_PATHS = "a folder of images (PATH/<class>/*.png), a .npz, .csv or .parquet file, or a Hugging Face dataset folder"


@dataclass(frozen=True)
class ImportOptions:
    image_size: int | None = None  # side S of the square S x S images; None = inferred
    channels: int | None = None  # 1 or 3; None = 1 when every image is grayscale, else 3
    skip_bad: bool = False  # skip unreadable/truncated images (listed in the report) instead of failing
    test_fraction: float = 0.2  # stratified, seeded (fixed seed 0) test split when the data has none

    def check(self) -> None:
        size, channels, fraction = self.image_size, self.channels, self.test_fraction
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 4096):
            raise CnnlabError(f"image_size must be a whole number of pixels from 1 to 4096, got {size!r}")
        if channels not in (None, 1, 3) or isinstance(channels, bool):
            raise CnnlabError(f"channels must be 1 or 3, got {channels!r}")
        if not isinstance(self.skip_bad, bool):
            raise CnnlabError(f"skip_bad must be true or false, got {self.skip_bad!r}")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
            raise CnnlabError(f"test_fraction must be a number from 0 to below 1, got {fraction!r}")


# ----------------------------------------------------------------------------------------------- names


def _path_like(name: str) -> bool:
    return (
        os.sep in name
        or bool(os.altsep and os.altsep in name)
        or name.startswith((".", "~"))
        or name.lower().endswith(TABLE_SUFFIXES)
    )


def is_own_dataset(name: str) -> bool:
    """Whether `name` names your own data: a path (has a separator, starts with . or ~, ends with .npz, .csv or
    .parquet, or exists) or a name registered with `cnnlab datasets add`. Catalog names are checked first by
    `load_dataset`."""
    if not isinstance(name, str) or not name or "\0" in name:
        return False
    if _path_like(name) or os.path.lexists(os.path.expanduser(name)):
        return True
    try:
        return resolve_name(name) is not None
    except (CnnlabError, OSError):
        return False  # a damaged or unreadable registry says so when the name is loaded


def _resolve(name: str) -> tuple[Path, str]:
    """(absolute path, display name): a registered name wins for a bare word, a path otherwise."""
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise CnnlabError(f"dataset must be a name or a path, got {name!r:.60}")
    name = str(name)
    registered = None if _path_like(name) else resolve_name(name)
    if registered is not None:
        return Path(os.path.abspath(os.path.expanduser(registered))), name
    path = Path(os.path.abspath(os.path.expanduser(name)))
    return path, (path.stem if path.suffix.lower() in TABLE_SUFFIXES else path.name) or str(path)


def _kind(path: Path) -> str:
    """ "folder", "npz", "csv" or "hf"; a one-line `DataError` for a path that is none of them."""
    try:
        info = os.stat(path)  # a link the user named is followed: it is their choice of path
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; give {_PATHS}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    suffix = path.suffix.lower()
    if stat.S_ISDIR(info.st_mode):
        return "hf" if _is_hf_folder(path) else "folder"
    if not stat.S_ISREG(info.st_mode):
        what = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "a device"
        raise DataError(f"{path} is {what}, not {_PATHS}")
    if suffix in (".npz", ".csv"):
        return suffix[1:]
    if suffix == ".parquet":
        return "hf"
    what = f"a {suffix} file" if suffix else "a file"
    raise DataError(f"{path} is {what}, not {_PATHS}")


def _is_hf_folder(path: Path) -> bool:
    if any(os.path.lexists(path / marker) for marker in HF_MARKERS):
        return True
    for folder in (path, path / "data"):
        try:
            with os.scandir(folder) as it:
                if any(e.name.lower().endswith(".parquet") for e in it if not e.name.startswith(".")):
                    return True
        except OSError:
            continue
    return False


# ----------------------------------------------------------------------------------------------- memory


def memory_available() -> int:
    """Bytes this process may still fill: the least of MemAvailable, its cgroups' memory limits and its rlimits."""
    limits = []
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    limits += cgroup_memory_limits()
    for which in (resource.RLIMIT_AS, getattr(resource, "RLIMIT_DATA", resource.RLIMIT_AS)):
        soft = resource.getrlimit(which)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            limits.append(soft)
    return min(limits) if limits else 1 << 62


def cgroup_memory_limits(cgroups: str | Path = "/proc/self/cgroup", root: str | Path = "/sys/fs/cgroup") -> list[int]:
    """The memory limits of this process's cgroup and its ancestors: cgroup v2's memory.max (a "0::" line) and
    v1's memory.limit_in_bytes (a line naming the memory controller), each read up to the mount's root."""
    try:
        lines = Path(cgroups).read_text().splitlines()
    except (OSError, ValueError):  # not Linux, or no /proc
        return []
    limits: list[int] = []
    for line in lines:
        hierarchy, controllers, group = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and controllers == "":
            base, name = Path(root), "memory.max"
        elif "memory" in controllers.split(","):
            base, name = Path(root) / "memory", "memory.limit_in_bytes"
        else:
            continue
        folder = base / group.strip().lstrip("/")
        for level in [folder, *folder.parents]:
            if level != base and base not in level.parents:
                break  # above the mount: not a cgroup folder
            with contextlib.suppress(OSError, ValueError):
                value = (level / name).read_text().strip()
                if value != "max" and int(value) < 1 << 62:  # v1 writes "no limit" as a page-rounded 2**63 - 1
                    limits.append(int(value))
    return limits


def _map_mode() -> Literal["c", "r"]:
    """ "c" (private, writable, copy-on-write) unless RLIMIT_DATA is finite: it counts such a mapping in full."""
    soft = resource.getrlimit(resource.RLIMIT_DATA)[0] if hasattr(resource, "RLIMIT_DATA") else resource.RLIM_INFINITY
    return "c" if soft == resource.RLIM_INFINITY else "r"


def _should_map(mmap: bool | None, decoded: int) -> bool:
    return mmap if mmap is not None else decoded > memory_available() // 2


# ----------------------------------------------------------------------------------------------- cache


def cache_folder() -> Path:
    return locate.cache_dir() / "imported"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _stat_key(kind: str, path: Path, manifest: Iterable[tuple[str, int, int]], options: dict[str, Any]) -> str:
    """The digest of where the data is, every file's (relative path, size, mtime_ns) and the options."""
    h = hashlib.sha256(json.dumps([VERSION, kind, str(path), options], sort_keys=True).encode())
    for rel, size, mtime_ns in manifest:  # hashed as it goes: no copy of a million-file list as JSON
        encoded = rel.encode("utf-8", "surrogateescape")
        h.update(len(encoded).to_bytes(4, "little") + encoded + struct.pack("<qq", size, mtime_ns))
    return h.hexdigest()


def _data_path(key: str) -> Path:
    return cache_folder() / f"{key[:40]}.bin"


def _index_path(stat_key: str) -> Path:
    return cache_folder() / "index" / f"{stat_key[:40]}.json"


def _align(n: int) -> int:
    return -(-n // 8) * 8


@dataclass
class _Decoded:
    """A cache file's (or a fresh import's) header and arrays."""

    header: dict[str, Any]
    images: np.ndarray  # (N, C, S, S) uint8, train rows first (train rows only when test_images is given)
    labels: np.ndarray  # (N,) int64
    file: Path | None
    mapped: bool
    imported: bool = False  # decoded by this call (else found in the cache)
    report: list[str] = dataclasses.field(default_factory=list)
    test_images: np.ndarray | None = None  # a table's test part, kept apart (no copy into one array)


def _record_fits(record: Any, channels: int, size: int) -> bool:
    """Whether a cached origin record has what a `Dataset` is built from, matching the arrays' shape."""
    return (
        isinstance(record, dict)
        and record.get("channels") == channels
        and record.get("image_size") == size
        and isinstance(record.get("classes"), list)
        and len(record["classes"]) >= 1
        and all(isinstance(c, str) for c in record["classes"])
        and all(
            isinstance(record.get(k), list)
            and len(record[k]) == channels
            and all(isinstance(v, (int, float)) for v in record[k])
            for k in ("mean", "std")
        )
        and isinstance(record.get("split"), str)
        and isinstance(record.get("skipped"), list)
        and isinstance(record.get("sizes_seen"), dict)
        and isinstance(record.get("notes"), list)
    )


def _read_cache(key: str, mmap: bool | None) -> _Decoded | None:
    """The cached data for content key `key`, or None when absent, damaged or not this key's."""
    path = _data_path(key)
    try:
        fd = open_regular(path, None, None)
    except (OSError, UnsafeFileError):
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(PREFIX)
            if len(prefix) != PREFIX or not prefix.startswith(MAGIC):
                return None
            header_at = int.from_bytes(prefix[32:40], "little")
            header_length = int.from_bytes(prefix[40:48], "little")
            if not (PREFIX <= header_at and 0 < header_length <= MAX_HEADER and header_at + header_length == size):
                return None
            f.seek(header_at)
            header = json.loads(f.read(header_length))
            n, channels, height, width = (int(v) for v in header["shape"])
            record = header["record"]
            row = channels * height * width
            labels_at = _align(PREFIX + n * row)
            if (
                header["key"] != key
                or header["version"] != VERSION
                or not (n >= 1 and channels in (1, 3) and height == width >= 1)
                or header_at != labels_at + 8 * n
                or int(header["train_size"]) + int(header["test_size"]) != n
                or int(header["train_size"]) < 1
                or not _record_fits(record, channels, height)
            ):
                return None
            if _should_map(mmap, n * row):
                f.seek(labels_at)
                raw = f.read(8 * n)
                if hashlib.sha256(raw).hexdigest() != header["labels_sha256"]:
                    return None
                labels = np.frombuffer(bytearray(raw), np.int64)
                images: np.ndarray = np.memmap(
                    f, np.uint8, mode=_map_mode(), offset=PREFIX, shape=(n, channels, height, width)
                )
                mapped = True
            else:
                payload = bytearray(header_at - PREFIX)
                f.seek(PREFIX)
                if (
                    f.readinto(payload) != len(payload)
                    or hashlib.sha256(payload).hexdigest() != header["payload_sha256"]
                ):
                    return None
                images = np.frombuffer(payload, np.uint8, n * row).reshape(n, channels, height, width)
                labels = np.frombuffer(payload, np.int64, n, labels_at - PREFIX)
                mapped = False
            if len(labels) and not (0 <= labels.min() and labels.max() < len(record["classes"])):
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    return _Decoded(header, images, labels, path, mapped)


def _read_index(stat_key: str, mmap: bool | None) -> _Decoded | None:
    try:
        entry = read_json(_index_path(stat_key), limit=1 << 16)
    except (OSError, UnsafeFileError):
        return None
    if entry.get("stat") != stat_key or not isinstance(entry.get("key"), str):
        return None
    return _read_cache(entry["key"], mmap)


def _write_index(stat_key: str, key: str, path: Path) -> None:
    with contextlib.suppress(OSError, UnsafeFileError):
        _index_path(stat_key).parent.mkdir(parents=True, exist_ok=True)
        write_json(_index_path(stat_key), {"stat": stat_key, "key": key, "path": str(path)})


@contextlib.contextmanager
def _lock(stat_key: str) -> Iterator[None]:
    """Hold the lock of one import (another process importing the same folder waits, then reuses it)."""
    fd = None
    if fcntl is not None:
        with contextlib.suppress(OSError):
            folder = cache_folder() / "locks"
            folder.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(folder / f"{stat_key[:40]}.lock", flags, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Target:
    """Where the decode pass writes the images: the cache's temp file mapped shared (for a memory-mapped
    result: the decoded data never has to fit in memory), or anonymous shared memory (an in-memory result,
    written to the cache afterwards). Both are inherited by the forked workers."""

    def __init__(self, shape: tuple[int, int, int, int], to_file: bool):
        n, channels, size, _ = shape
        self.row = channels * size * size
        self.length = PREFIX + n * self.row  # what the shared mapping covers
        self.fd: int | None = None
        self.temp: str | None = None
        self.in_file = False  # whether the images are decoded into the cache file (else into memory)
        if to_file:
            try:
                cache_folder().mkdir(parents=True, exist_ok=True)
                self.fd, self.temp = tempfile.mkstemp(prefix=".import-", suffix=".tmp", dir=cache_folder())
                total = _align(self.length) + 8 * n
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(self.fd, 0, total)  # a full disk fails here, not as a SIGBUS mid-decode
                else:
                    os.ftruncate(self.fd, total)
                self.map = _mmap.mmap(self.fd, self.length)
                self.images = np.frombuffer(self.map, np.uint8, n * self.row, PREFIX).reshape(shape)
                self.in_file = True
                return
            except OSError:
                self.discard()
        self.map = _mmap.mmap(-1, n * self.row)
        self.images = np.frombuffer(self.map, np.uint8).reshape(shape)

    def compact(self, keep: np.ndarray) -> int:
        """Move the kept rows together (in order, a block at a time); returns how many are kept."""
        kept = np.flatnonzero(keep)
        at = 0
        for start in range(0, len(kept), 1024):
            rows = kept[start : start + 1024]
            if rows[0] != at or rows[-1] != at + len(rows) - 1:
                self.images[at : at + len(rows)] = self.images[rows]
            at += len(rows)
        return at

    def finish(self, n: int, labels: np.ndarray, header: dict[str, Any], key: str) -> Path | None:
        """Write the first `n` rows, `labels` and `header` as the cache file of `key`; its path, or None when
        the cache cannot be written. A file target is closed after (reopen it with `_read_cache`); one that
        cannot be finished raises, since the data is nowhere else."""
        images = self.images[:n]
        labels_at = _align(PREFIX + n * self.row)
        pad = bytes(labels_at - PREFIX - n * self.row)
        labels_bytes = np.ascontiguousarray(labels, np.int64).tobytes()
        payload = hashlib.sha256()
        flat = images.reshape(-1)
        for start in range(0, len(flat), 64 << 20):
            payload.update(flat[start : start + (64 << 20)].data)
        payload.update(pad + labels_bytes)
        header = {
            **header,
            "payload_sha256": payload.hexdigest(),
            "labels_sha256": hashlib.sha256(labels_bytes).hexdigest(),
        }
        text = json.dumps(header, separators=(",", ":")).encode()
        header_at = labels_at + len(labels_bytes)
        prefix = MAGIC.ljust(32, b"\0") + header_at.to_bytes(8, "little") + len(text).to_bytes(8, "little")
        prefix = prefix.ljust(PREFIX, b"\0")
        try:
            if self.in_file:
                assert self.fd is not None
                del images, flat
                self.images = np.empty((0,), np.uint8)  # the mapping may close only when no array uses it
                self.map.flush()
                self.map.close()
                fd = self.fd
                os.pwrite(fd, pad + labels_bytes, labels_at - len(pad))
            else:
                cache_folder().mkdir(parents=True, exist_ok=True)
                fd, self.temp = tempfile.mkstemp(prefix=".import-", suffix=".tmp", dir=cache_folder())
                self.fd = fd
                os.pwrite(fd, prefix, 0)
                at = PREFIX
                for start in range(0, len(flat), 64 << 20):
                    view = flat[start : start + (64 << 20)].data
                    while view:
                        written = os.pwrite(fd, view, at)
                        view, at = view[written:], at + written
                os.pwrite(fd, pad + labels_bytes, at)
            os.pwrite(fd, text, header_at)
            os.pwrite(fd, prefix, 0)
            os.ftruncate(fd, header_at + len(text))
            os.fchmod(fd, 0o666 & ~_umask())
            os.fsync(fd)
            assert self.temp is not None
            os.replace(self.temp, _data_path(key))
            self.temp = None
            _fsync_dir(cache_folder())
            return _data_path(key)
        except OSError as err:
            if self.in_file:  # the decoded data lived only in this file: there is nothing to fall back on
                raise DataError(
                    f"cannot write the imported data to {cache_folder()} ({err.strerror or err}); free some space "
                    "there, or load it into memory (mmap=False)"
                ) from None
            return None  # the cache only saves time: the data stays in memory
        finally:
            self.discard()

    def discard(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        if self.temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.temp)
            self.temp = None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------------------- import


@dataclass
class _Items:
    """What is to be decoded: sources (paths or encoded bytes), their names, labels and test flags."""

    sources: Sequence[decode.Source]
    names: list[str]
    labels: np.ndarray
    test: np.ndarray | None  # None: no test part given, split here
    classes: tuple[str, ...]
    split: str  # how the given test part is named ("folders: train/test")
    notes: list[str]
    where: str  # how a bad image is named: "{where}{name}"


def _stratified(labels: np.ndarray, keys: Sequence[str], fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices, each sorted: in every class of n >= 2 items, round(n * fraction) of them (at
    least 1, at most n - 1) go to the test part, chosen by the sha256 of "seed:key" (so the choice depends on
    no library's random stream, and adding an image leaves the others where they were)."""
    test: list[int] = []
    if fraction > 0:
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            count = len(members)
            if count < 2:
                continue
            k = min(count - 1, max(1, round(count * fraction)))
            ranked = sorted(members.tolist(), key=lambda i: hashlib.sha256(f"{SEED}:{keys[i]}".encode()).digest())
            test.extend(ranked[:k])
    mask = np.zeros(len(labels), bool)
    mask[test] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _split_text(fraction: float) -> str:
    return f"stratified {fraction * 100:g}% test, seed {SEED}"


def _bad_error(bad: dict[int, str], items: _Items) -> DataError:
    first = min(bad)
    others = f", and {len(bad) - 1} other(s)" if len(bad) > 1 else ""
    return DataError(
        f"{items.where}{items.names[first]}: {bad[first]}{others}; pass --skip-bad-images to leave them out"
    )


def _changed_error(path: Path, recorded: str, now: str) -> DataError:
    return DataError(
        f"{path} changed since the run was trained: content sha256 {recorded[:12]}... then, {now[:12]}... now; "
        "restore it, or train a new run on it"
    )


def _mean_std(counts: np.ndarray) -> tuple[list[float], list[float]]:
    values = np.arange(256, dtype=np.float64) / 255
    means, stds = [], []
    for row in counts:
        total = max(int(row.sum()), 1)
        mean = float((row * values).sum() / total)
        var = max(float((row * values**2).sum() / total) - mean**2, 0.0)
        means.append(round(mean, 6))
        stds.append(round(math.sqrt(var), 6) or 1.0)  # a constant image set: nothing to scale by
    return means, stds


def _sizes_seen(width: np.ndarray, height: np.ndarray) -> dict[str, int]:
    seen = collections.Counter(zip(width.tolist(), height.tolist()))
    return {f"{w}x{h}": count for (w, h), count in seen.most_common()}


def _import(
    items: _Items, probes: decode.Probes, options: ImportOptions, progress: bool, mmap: bool | None
) -> tuple[_Decoded, _Target]:
    """Decode the probed items into a new cache file (or memory); raises for bad images unless skip_bad."""
    bad = dict(probes.bad)
    if bad and not options.skip_bad:
        raise _bad_error(bad, items)
    good = np.array([i for i in range(len(items.sources)) if i not in bad], np.int64)
    if len(good) == 0:
        raise DataError(f"{items.where.rstrip('/: ')}: none of the {len(items.sources)} images can be decoded")
    sizes = _sizes_seen(probes.width[good], probes.height[good])
    common = collections.Counter(zip(probes.width[good].tolist(), probes.height[good].tolist())).most_common()
    top = max(count for _, count in common)
    size = options.image_size or max(max(w, h) for (w, h), count in common if count == top)
    gray = bool(probes.gray[good].all())
    channels = options.channels or (1 if gray else 3)
    notes = list(items.notes)
    alpha = int(probes.alpha[good].sum())
    if alpha:
        notes.append(f"{alpha} image(s) with transparency composited over black")
    if items.test is None:
        train, test = _stratified(items.labels[good], [items.names[i] for i in good], options.test_fraction)
        train, test, split = good[train], good[test], _split_text(options.test_fraction)
    else:
        train, test, split = good[~items.test[good]], good[items.test[good]], items.split
    order = np.concatenate([train, test])
    n, n_train = len(order), len(train)
    if n_train == 0:
        raise DataError(f"{items.where.rstrip('/: ')}: no train images left to learn from")
    shape = (n, channels, size, size)
    decoded_size = n * channels * size * size
    target = _Target(shape, to_file=_should_map(mmap, decoded_size))
    if not target.in_file and decoded_size > memory_available():
        raise DataError(
            f"{items.where.rstrip('/: ')}: the decoded images need {decoded_size / 2**30:.1f} GiB, more than the "
            f"memory available ({memory_available() / 2**30:.1f} GiB), and the cache {cache_folder()} cannot hold "
            "them; make it writable (or set $XDG_CACHE_HOME to a folder with room), or pass a smaller image_size"
        )
    try:
        sources = [items.sources[i] for i in order]
        digests = [probes.digests[i] for i in order]
        late, counts = decode.decode_into(sources, target.images, digests, n_train, progress)
        changed = [i for i, why in late.items() if why == decode.CHANGED]
        if changed:
            raise DataError(
                f"{items.where}{items.names[order[changed[0]]]} changed while it was imported; import it again"
            )
        if late and not options.skip_bad:
            raise _bad_error({int(order[i]): why for i, why in late.items()}, items)
        for i, why in late.items():
            bad[int(order[i])] = why
        keep = np.ones(n, bool)
        keep[list(late)] = False
        kept = target.compact(keep) if late else n
        n_train = int(keep[:n_train].sum())
        labels = items.labels[order][keep]
        if n_train == 0:
            raise DataError(f"{items.where.rstrip('/: ')}: no train images left to learn from")
        mean, std = _mean_std(counts)
        skipped = [items.names[i] for i in sorted(bad)]
        record = {
            "classes": list(items.classes),
            "split": split,
            "train_size": n_train,
            "test_size": kept - n_train,
            "image_size": size,
            "channels": channels,
            "mean": mean,
            "std": std,
            "skipped": skipped[:MAX_SKIPPED_LISTED],
            "skipped_count": len(skipped),
            "skipped_why": {items.names[i]: bad[i] for i in sorted(bad)[:MAX_SKIPPED_LISTED]},
            "sizes_seen": sizes,
            "channels_why": (
                "forced" if options.channels else "every image is grayscale" if gray else "some images have colour"
            ),
            "notes": notes,
        }
        return _Decoded(
            {
                "record": record,
                "train_size": n_train,
                "test_size": kept - n_train,
                "shape": [kept, channels, size, size],
            },
            target.images[:kept],
            labels,
            None,
            False,
            imported=True,
        ), target
    except BaseException:
        target.discard()
        raise


def _store(decoded: _Decoded, target: _Target, key: str, content: str) -> _Decoded:
    """Write a fresh import into the cache; a mapped result is reopened from its file, copy-on-write."""
    header = {**decoded.header, "version": VERSION, "key": key, "sha256": content}
    mapped = target.in_file
    n = decoded.header["shape"][0]
    if mapped:
        decoded.images = np.empty((0,), np.uint8)  # the shared mapping closes only when no array uses it
    written = target.finish(n, decoded.labels, header, key)
    if mapped:
        reopened = _read_cache(key, True) if written is not None else None
        if reopened is None:
            raise DataError(f"{_data_path(key)}: the imported data could not be read back from the cache")
        reopened.imported = True
        return reopened
    decoded.header = header
    decoded.file = written
    return decoded


def _walk_files(path: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every visible regular file under `path` (or of the file itself)."""
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        return [(path.name, info.st_size, info.st_mtime_ns)]
    found = []
    for folder, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            with contextlib.suppress(OSError):
                entry = os.lstat(os.path.join(folder, name))
                if stat.S_ISREG(entry.st_mode):
                    rel = os.path.relpath(os.path.join(folder, name), path)
                    found.append((rel, entry.st_size, entry.st_mtime_ns))
            if len(found) > imagefolder.MAX_FILES:
                raise DataError(f"{path} holds more than {imagefolder.MAX_FILES:,} files")
    return found


def _folder_items(path: Path, layout: imagefolder.Layout) -> _Items:
    split = f"folders: {layout.train_folder}/{layout.test_folder}" if layout.test_folder else ""
    notes = list(layout.notes)
    if layout.ignored:
        notes.append(
            f"{layout.ignored} file(s) that are not images ignored (e.g. {', '.join(layout.ignored_examples[:3])})"
        )
    if layout.refused:
        notes.append(f"{len(layout.refused)} entr(ies) refused: {'; '.join(layout.refused[:3])}")
    return _Items(
        sources=[f.path for f in layout.files],
        names=[f.rel for f in layout.files],
        labels=np.array([f.label for f in layout.files], np.int64),
        test=np.array([f.test for f in layout.files], bool) if layout.test_folder else None,
        classes=layout.classes,
        split=split,
        notes=notes,
        where=f"{path}{os.sep}",
    )


def _folder_content(items: _Items, digests: Sequence[bytes]) -> str:
    """The folder's content sha256: every image's relative path and the sha256 of its bytes, in order."""
    h = hashlib.sha256(b"cnnlab image folder\n")
    for name, digest in zip(items.names, digests):
        encoded = name.encode("utf-8", "surrogateescape")
        h.update(len(encoded).to_bytes(4, "little") + encoded + (digest or b"\0" * 32))
    return h.hexdigest()


def _hf_items(path: Path) -> tuple[_Items, str]:
    encoded = read_hf(path)
    train, test = list(encoded.train), list(encoded.test) if encoded.test is not None else []
    labels = [np.asarray(encoded.train_labels, np.int64)]
    if encoded.test is not None and encoded.test_labels is not None:
        labels.append(np.asarray(encoded.test_labels, np.int64))
    items = _Items(
        sources=train + test,
        names=[f"train[{i}]" for i in range(len(train))] + [f"test[{i}]" for i in range(len(test))],
        labels=np.concatenate(labels),
        test=np.array([False] * len(train) + [True] * len(test)) if encoded.test is not None else None,
        classes=tuple(encoded.classes),
        split="hf: train/test",
        notes=list(encoded.notes),
        where=f"{path}: ",
    )
    if len(items.labels) != len(items.sources):
        raise DataError(f"{path}: {len(items.sources)} images but {len(items.labels)} labels")
    if len(items.labels) and not (0 <= items.labels.min() and items.labels.max() < len(items.classes)):
        raise DataError(f"{path}: labels outside 0..{len(items.classes) - 1}")
    return items, encoded.sha256


def _load_images(
    kind: str, path: Path, options: ImportOptions, progress: bool, mmap: bool | None, expect: str | None
) -> _Decoded:
    started = time.perf_counter()
    layout = imagefolder.scan(path) if kind == "folder" else None
    options_key = dataclasses.asdict(options)
    stat_key = _stat_key(kind, path, layout.manifest() if layout is not None else _walk_files(path), options_key)
    found = _read_index(stat_key, mmap)
    if found is not None:
        return found
    with _lock(stat_key):
        found = _read_index(stat_key, mmap)  # another process may have imported it while this one waited
        if found is not None:
            return found
        probes = None
        if layout is not None:
            items = _folder_items(path, layout)
            probes = decode.probe(items.sources, progress)
            content = _folder_content(items, probes.digests)
        else:
            items, content = _hf_items(path)
        if expect is not None and content != expect:
            raise _changed_error(path, expect, content)
        key = _digest({"v": VERSION, "sha256": content, "options": options_key})
        found = _read_cache(key, mmap)
        if found is not None:
            found.report = [f"{path}: same content as an earlier import; reusing its decoded data ({found.file})"]
        else:
            if probes is None:
                probes = decode.probe(items.sources, progress)
            fresh, target = _import(items, probes, options, progress, mmap)
            found = _store(fresh, target, key, content)
            found.report = _report(path, found, items, time.perf_counter() - started)
        _write_index(stat_key, key, path)
        return found


def _report(path: Path, decoded: _Decoded, items: _Items, seconds: float) -> list[str]:
    record = decoded.header["record"]
    n = record["train_size"] + record["test_size"]
    channels = record["channels"]
    lines = [
        f"imported {path}: {n:,} images of {len(items.classes)} classes in {seconds:.1f} s "
        f"({(n + record['skipped_count']) / max(seconds, 1e-9):,.0f} images/s)",
        f"  split: {record['split']}: {record['train_size']:,} train, {record['test_size']:,} test",
    ]
    per_class = np.bincount(decoded.labels, minlength=len(items.classes)).tolist()
    shown = ", ".join(f"{name} {count:,}" for name, count in list(zip(items.classes, per_class))[:12])
    more = f", and {len(items.classes) - 12} more" if len(items.classes) > 12 else ""
    lines.append(f"  per class: {shown}{more}")
    sizes = record["sizes_seen"]
    size = record["image_size"]
    seen = ", ".join(f"{k} ({v:,})" for k, v in list(sizes.items())[:6]) + (", ..." if len(sizes) > 6 else "")
    resized = sum(v for k, v in sizes.items() if k != f"{size}x{size}")
    lines.append(
        f"  sizes seen: {seen}" + (f"; {resized:,} resized to {size}x{size}" if resized else f"; all {size}x{size}")
    )
    lines.append(f"  channels: {channels} ({'gray' if channels == 1 else 'RGB'}: {record['channels_why']})")
    lines.extend(f"  note: {note}" for note in record["notes"])
    if record["skipped_count"]:
        listed = "; ".join(f"{k}: {v}" for k, v in list(record["skipped_why"].items())[:5])
        lines.append(f"  skipped {record['skipped_count']} bad image(s): {listed}")
    where = str(decoded.file) if decoded.file else "not written (the cache folder cannot be written); in memory"
    lines.append(f"  cache: {where}" + (" (memory-mapped)" if decoded.mapped else ""))
    return lines


# ----------------------------------------------------------------------------------------------- tables


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=1)
    out = np.empty((len(images), 1, *images.shape[2:]), np.uint8)
    for start in range(0, len(images), 4096):  # ITU-R 601-2 luma, as PIL's convert("L")
        part = images[start : start + 4096].astype(np.uint32)
        out[start : start + 4096, 0] = (part[:, 0] * 299 + part[:, 1] * 587 + part[:, 2] * 114 + 500) // 1000
    return out


def _to_size(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[2] == images.shape[3] == size:
        return images
    out = np.empty((len(images), images.shape[1], size, size), np.uint8)
    for start in range(0, len(images), 1024):
        part = torch.from_numpy(np.ascontiguousarray(images[start : start + 1024])).float()
        scaled = torch.nn.functional.interpolate(part, (size, size), mode="bilinear", antialias=True)
        out[start : start + 1024] = scaled.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _load_table(kind: str, path: Path, options: ImportOptions, expect: str | None) -> _Decoded:
    table = tables.read_npz(path) if kind == "npz" else tables.read_csv(path)
    if expect is not None and table.sha256 != expect:
        raise _changed_error(path, expect, table.sha256)
    train = np.asarray(table.train_images)
    if train.ndim != 4 or train.dtype != np.uint8 or train.shape[1] not in (1, 3):
        raise DataError(f"{path}: expected uint8 images (N, 1 or 3, H, W), got {train.dtype} {train.shape}")
    channels = options.channels or train.shape[1]
    size = options.image_size or max(train.shape[2:])
    sizes = {f"{train.shape[3]}x{train.shape[2]}": len(train)}
    train_labels = np.asarray(table.train_labels, np.int64)
    if table.test_images is not None and table.test_labels is not None:
        test = _to_size(_to_channels(np.asarray(table.test_images), channels), size)
        test_labels = np.asarray(table.test_labels, np.int64)
        train = _to_size(_to_channels(train, channels), size)
        split = "file: x_test/y_test"
    else:
        train = _to_size(_to_channels(train, channels), size)
        keys = [str(i) for i in range(len(train_labels))]
        train_rows, test_rows = _stratified(train_labels, keys, options.test_fraction)
        test, test_labels = train[test_rows], train_labels[test_rows]
        train, train_labels = train[train_rows], train_labels[train_rows]
        split = _split_text(options.test_fraction)
    counts = np.zeros((channels, 256), np.int64)
    for start in range(0, len(train), 4096):
        for c in range(channels):
            counts[c] += np.bincount(train[start : start + 4096, c].ravel(), minlength=256)
    mean, std = _mean_std(counts)
    record = {
        "classes": list(table.classes),
        "split": split,
        "train_size": len(train),
        "test_size": len(test),
        "image_size": size,
        "channels": channels,
        "mean": mean,
        "std": std,
        "skipped": [],
        "skipped_count": 0,
        "sizes_seen": sizes,
        "notes": list(table.notes),
    }
    labels = np.concatenate([train_labels, test_labels])
    if len(labels) and not (0 <= labels.min() and labels.max() < len(table.classes)):
        raise DataError(f"{path}: labels outside 0..{len(table.classes) - 1}")
    header = {"record": record, "train_size": len(train), "test_size": len(test), "sha256": table.sha256}
    return _Decoded(header, train, labels, None, False, test_images=test)


# ----------------------------------------------------------------------------------------------- API


def _dataset(decoded: _Decoded, kind: str, path: Path, name: str, options: ImportOptions) -> Dataset:
    record = decoded.header["record"]
    n_train = int(decoded.header["train_size"])
    spec = DatasetSpec(
        name=name,
        channels=int(record["channels"]),
        image_size=int(record["image_size"]),
        classes=tuple(record["classes"]),
        mean=tuple(record["mean"]),
        std=tuple(record["std"]),
        hflip=False,
        train_size=n_train,
        test_size=int(decoded.header["test_size"]),
        format="own",
    )
    images, labels = decoded.images, decoded.labels
    if decoded.test_images is not None:
        train_images, test_images = images, decoded.test_images
    else:
        train_images, test_images = images[:n_train], images[n_train:]

    def tensor(array: np.ndarray) -> torch.Tensor:
        if isinstance(array, np.memmap):
            with warnings.catch_warnings():  # read-only under RLIMIT_DATA, on purpose (see the module's docstring)
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return torch.from_numpy(array)
        return torch.from_numpy(np.require(array, requirements=["C_CONTIGUOUS", "WRITEABLE"]))

    origin = {
        "kind": kind,
        "path": str(path),
        "name": name,
        "sha256": decoded.header["sha256"],
        **{k: v for k, v in record.items() if k != "skipped_why"},
        "options": dataclasses.asdict(options),
    }
    return Dataset(
        spec=spec,
        train_images=tensor(train_images),
        train_labels=tensor(labels[:n_train]),
        test_images=tensor(test_images),
        test_labels=tensor(labels[n_train:]),
        source=str(path),
        origin=origin,
        mapped=isinstance(images, np.memmap),
    )


def _load(
    name: str,
    options: ImportOptions,
    progress: bool,
    mmap: bool | None,
    expect: str | None = None,
    display: str | None = None,
) -> Dataset:
    if not isinstance(options, ImportOptions):
        raise CnnlabError(f"options must be an ImportOptions, got {type(options).__name__}")
    options.check()
    path, shown = _resolve(name)
    kind = _kind(path)
    if kind in ("npz", "csv"):
        decoded = _load_table(kind, path, options, expect)
    else:
        decoded = _load_images(kind, path, options, progress, mmap, expect)
        if expect is not None and decoded.header["sha256"] != expect:
            raise _changed_error(path, expect, decoded.header["sha256"])
    if decoded.report and progress:
        print("\n".join(decoded.report), file=sys.stderr, flush=True)
    return _dataset(decoded, kind, path, display or shown, options)


def load_own(
    name: str, options: ImportOptions = ImportOptions(), progress: bool = True, mmap: bool | None = None
) -> Dataset:
    """Your own data at `name` (a path, or a name registered with `cnnlab datasets add`) as a `Dataset`.

    Imported once into the cache (a progress bar and a short report on stderr when `progress`), then reused
    while the data is unchanged. `mmap`: map the cached images instead of reading them (None: when they
    exceed half of the memory available). Bad input raises a one-line `DataError`.
    """
    return _load(name, options, progress, mmap)


def spec_from_record(record: dict) -> DatasetSpec:
    """The spec of the data a run recorded in its origin (config.json), without touching the data."""
    try:
        return DatasetSpec(
            name=str(record["name"]),
            channels=int(record["channels"]),
            image_size=int(record["image_size"]),
            classes=tuple(str(c) for c in record["classes"]),
            mean=tuple(float(v) for v in record["mean"]),
            std=tuple(float(v) for v in record["std"]),
            hflip=False,
            train_size=int(record["train_size"]),
            test_size=int(record["test_size"]),
            format="own",
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(
            f"the run's record of its data is incomplete or damaged ({type(err).__name__}: {err})"
        ) from None


def check_source(record: dict, options: ImportOptions) -> Dataset:
    """Load the data a run recorded again, making sure it is still there and still the same content."""
    try:
        path, recorded = Path(record["path"]), str(record["sha256"])
    except (KeyError, TypeError):
        raise DataError("the run's record of its data has no path or sha256; it cannot be checked") from None
    if not os.path.lexists(path):
        raise DataError(
            f"{path}, the data this run was trained on, was moved or deleted; put it back, "
            "or give its new path (cnnlab datasets add NAME PATH)"
        )
    progress = sys.stderr.isatty()
    return _load(str(path), options, progress, None, expect=recorded, display=record.get("name") or None)
