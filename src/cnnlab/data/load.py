"""Load a dataset into whole uint8 tensors, after checking every file against the catalog's sums.

Each file is read once, decompressed if gzipped, verified, then decoded with
one `frombuffer`. Verification results are remembered for the life of the
process (keyed by path, size, mtime and expected sums), so loading the same
files again skips the hashing. Nothing is cached on disk except downloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from cnnlab.data import cache, locate
from cnnlab.data.catalog import CIFAR_TRAIN_BATCHES, DATASETS, DatasetSpec, Resource, get_spec, identify
from cnnlab.data.idx import parse_idx, read_bounded
from cnnlab.errors import CnnlabError, DataError, unknown_choice

T = TypeVar("T")
_VERIFIED: set[tuple] = set()  # (path, size, mtime_ns, resource) of files whose sums matched


@dataclass(repr=False)
class Dataset:
    """A whole dataset in memory: uint8 (N, C, H, W) images and int64 labels, on the CPU."""

    spec: DatasetSpec
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # the folder it was read from, or "embedded"
    origin: dict | None = None  # your own data (imported.py): where it came from, for the run's config.json
    mapped: bool = False  # the images are memory-mapped from the cache file (gather rows; never copy them whole)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    @property
    def mean(self) -> tuple[float, ...]:
        return self.spec.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.spec.std

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.train_labels)}, test={len(self.test_labels)}, "
            f"shape={tuple(self.train_images.shape[1:])}, source={self.source!r})"
        )


class _Mismatch(Exception):
    """A file's sums do not match; `sums` are the file's actual digests (to recognise another dataset)."""

    def __init__(self, message: str, sums: set[str]):
        super().__init__(message)
        self.sums = sums


class _Unverifiable(DataError):
    """No sum is known for the form the file is stored in, so it cannot be trusted."""


def list_datasets() -> list[str]:
    return list(DATASETS)


# For a file whose uncompressed size the catalog does not know: above any dataset file cnnlab reads
# (MNIST's largest is 47 MB, a CIFAR-10 batch 31 MB), far below what would exhaust memory.
UNKNOWN_SIZE_LIMIT = 256 << 20
_ALGORITHMS = ("sha256", "md5")


def _verify(
    path: Path, stored: dict[str, str], content: dict[str, str], length: int, resource: Resource, dataset: str
) -> None:
    """Raise `_Mismatch` unless the file matches one of `resource`'s sums.

    `stored` and `content` map algorithm -> hex digest of the bytes on disk and of the
    decompressed bytes; `length` is the decompressed size.
    """
    packed = path.name.endswith(".gz")
    if packed and (stored["sha256"] in resource.gz_sha256 or stored["md5"] in resource.gz_md5):
        return
    # A .gz compressed by another tool still passes when its content matches.
    accepted: tuple[str, ...]
    if resource.sha256:
        algorithm, accepted, sums = "sha256", (resource.sha256,), content
    elif resource.md5:
        algorithm, accepted, sums = "md5", (resource.md5,), content
    elif packed:
        algorithm, accepted = ("md5", resource.gz_md5) if resource.gz_md5 else ("sha256", resource.gz_sha256)
        sums = stored
    else:
        raise _Unverifiable(
            f"{path}: cnnlab knows no checksum for the uncompressed {resource.filename}, only for "
            f"{resource.filename}.gz; put the original {resource.filename}.gz in {path.parent} instead"
        )
    actual = sums[algorithm]
    if actual in accepted:
        return
    truncated = ""
    if resource.size and length < resource.size:
        truncated = f" (truncated: {length} of {resource.size} bytes)"
    raise _Mismatch(
        f"{path}: checksum mismatch for {dataset} {resource.filename}: expected {algorithm} {' or '.join(accepted)}, "
        f"got {actual}{truncated}; the file is corrupt, truncated or not from {dataset}: delete it and download "
        "it again (cnnlab never overwrites your files), or point --data-dir at a good copy",
        {*stored.values(), *content.values()},
    )


def _cache_key(path: Path, resource: Resource) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns, resource)


def _read_verified(path: Path, resource: Resource, dataset: str) -> bytes:
    """The uncompressed content of `path`, after checking its sums (once per process per file).

    The file is read and decompressed as a stream, hashed as it goes, and abandoned
    once its content passes the size the catalog expects: a gzip bomb under a
    dataset's file name fails fast instead of filling memory.
    """
    key = _cache_key(path, resource)
    check = key not in _VERIFIED
    stored = {a: hashlib.new(a) for a in _ALGORITHMS} if check else {}
    content_hashes = {a: hashlib.new(a) for a in _ALGORITHMS} if check else {}
    content = read_bounded(
        path,
        resource.size or UNKNOWN_SIZE_LIMIT,
        f"{dataset} {resource.filename}",
        stored.values(),
        content_hashes.values(),
        gzipped=path.name.endswith(".gz"),
    )
    if check:
        _verify(
            path,
            {a: h.hexdigest() for a, h in stored.items()},
            {a: h.hexdigest() for a, h in content_hashes.items()},
            len(content),
            resource,
            dataset,
        )
        _VERIFIED.add(key)
    return content


def _decode_idx(spec: DatasetSpec, contents: list[bytes], paths: tuple[Path, ...]) -> tuple[np.ndarray, ...]:
    arrays = [parse_idx(data, path) for data, path in zip(contents, paths)]
    train_images, train_labels, test_images, test_labels = arrays
    size = spec.image_size
    for images, labels, path in ((train_images, train_labels, paths[0]), (test_images, test_labels, paths[2])):
        if images.ndim != 3 or images.shape[1:] != (size, size) or images.dtype != np.uint8:
            raise DataError(f"{path}: expected uint8 images of {size}x{size} pixels, got {images.dtype} {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{path}: {len(images)} images but {labels.shape} labels in the matching labels file")
    return (train_images[:, None], train_labels, test_images[:, None], test_labels)


def _decode_cifar(spec: DatasetSpec, contents: list[bytes]) -> tuple[np.ndarray, ...]:
    # Only files whose md5 matched torchvision's are unpickled (pickle can run code).
    batches = [pickle.loads(data, encoding="bytes") for data in contents]
    size, channels = spec.image_size, spec.channels

    def stack(parts):
        images = np.concatenate([b[b"data"] for b in parts]).reshape(-1, channels, size, size)
        labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in parts])
        return images, labels

    train = stack(batches[: len(CIFAR_TRAIN_BATCHES)])
    test = stack(batches[len(CIFAR_TRAIN_BATCHES) :])
    return (*train, *test)


def _tensors(spec: DatasetSpec, arrays: tuple[np.ndarray, ...], source: str) -> Dataset:
    train_images, train_labels, test_images, test_labels = arrays

    def images(a):
        # Copied unless already a writable C array of its own (a cache read): parsed IDX views are read-only.
        return torch.from_numpy(np.require(a, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"]))

    def labels(a, where):
        labels = torch.from_numpy(np.asarray(a).astype(np.int64))
        if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < spec.num_classes):
            raise DataError(
                f"{where}: labels outside 0..{spec.num_classes - 1} in {spec.name}; the file is not {spec.name}"
            )
        return labels

    return Dataset(
        spec=spec,
        train_images=images(train_images),
        train_labels=labels(train_labels, source),
        test_images=images(test_images),
        test_labels=labels(test_labels, source),
        source=source,
    )


def _load_candidate(spec: DatasetSpec, candidate: locate.Candidate) -> Dataset:
    # The decoded arrays are cached under a key naming these exact files (path, size, mtime) and the sums
    # they matched, and written only after they matched: a hit stands for a verified read of them.
    key = cache.key(spec, candidate.paths)
    arrays = cache.read(key)
    if arrays is None:
        contents = [_read_verified(p, r, spec.name) for p, r in zip(candidate.paths, spec.files)]
        if spec.format == "idx":
            arrays = _decode_idx(spec, contents, candidate.paths)
        else:
            arrays = _decode_cifar(spec, contents)
        cache.write(key, arrays)
    return _tensors(spec, arrays, str(candidate.folder))


def _check_candidate(spec: DatasetSpec, candidate: locate.Candidate) -> locate.Candidate:
    for path, resource in zip(candidate.paths, spec.files):
        if _cache_key(path, resource) not in _VERIFIED:
            _read_verified(path, resource, spec.name)
    return candidate


class _BadCopy(DataError):
    """A candidate folder's file is damaged; `candidate` says which folder."""

    def __init__(self, message: str, candidate: locate.Candidate, state: str = "mismatch"):
        super().__init__(message)
        self.candidate = candidate
        self.state = state  # the checksum state `cnnlab datasets` shows: "mismatch" or "not checked"


def _first_verified(
    spec: DatasetSpec, scan: locate.Scan, action: Callable[[DatasetSpec, locate.Candidate], T]
) -> T | None:
    """`action(spec, candidate)` on the first candidate whose files verify, or None.

    A folder holding another dataset's files under the same names (a flat root
    with MNIST, asked for Fashion-MNIST) is noted and skipped; any other
    mismatch raises `_BadCopy`, since that file is the user's and looks damaged.
    """
    for candidate in scan.candidates:
        try:
            return action(spec, candidate)
        except _Mismatch as err:
            other = identify(err.sums)
            if other is None or other == spec.name:
                raise _BadCopy(str(err), candidate) from None
            scan.note(candidate.folder, f"holds {other}, not {spec.name}")
        except _BadCopy:
            raise
        except DataError as err:
            state = "not checked" if isinstance(err, _Unverifiable) else "mismatch"
            raise _BadCopy(str(err), candidate, state) from None
    return None


def _load_embedded(spec: DatasetSpec) -> Dataset:
    resource = resources.files("cnnlab.data") / "samples" / f"{spec.name}.npz"
    try:
        with resources.as_file(resource) as path, np.load(path) as npz:
            arrays = tuple(npz[k] for k in ("train_images", "train_labels", "test_images", "test_labels"))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(
            f"embedded sample {spec.name}.npz is missing or damaged ({err}); reinstall cnnlab "
            "or rebuild it with scripts/make_samples.py"
        ) from None
    return _tensors(spec, arrays, "embedded")


def _not_found(spec: DatasetSpec, scan: locate.Scan, why: str, retry: str = "") -> DataError:
    first = spec.files[0]
    example = Path("DIR") / spec.subdirs[0] / (first.filename + (".gz" if first.gzip else ""))
    apt = f", or `apt install {spec.apt_package}`" if spec.apt_package else ""
    return DataError(
        f"dataset {spec.name!r} not found ({why}); looked in {scan.describe()}. "
        f"Supply the files with --data-dir DIR or $CNNLAB_DATA=DIR (e.g. {example}){apt}{retry}, "
        "or use the embedded mnist-sample or fashion-mnist-sample"
    )


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, download: bool = True, **import_options: Any
) -> Dataset:
    """Load dataset `name` into CPU tensors, searching `data_dir`, `$CNNLAB_DATA`, the cache and system dirs.

    When no verified copy is found and `download` is true and `$CNNLAB_OFFLINE`
    is not set, torchvision downloads it into the cache. Missing, corrupt or
    unreadable data raises `DataError` with a one-line explanation and fix.

    A `name` that is not in the catalog but a path (a folder of images, a .npz, .csv or .parquet file) or a
    name registered with `cnnlab datasets add` is your own data, imported by `imported.load_own`;
    `import_options` are its `ImportOptions` (image_size, channels, skip_bad, test_fraction) and its
    `progress` and `mmap` arguments.
    """
    # here: imported.py builds on Dataset from this module, so a top-level import would be a cycle
    from cnnlab.data import imported

    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if isinstance(name, str) and name not in DATASETS and imported.is_own_dataset(name):
        extra = {k: import_options.pop(k) for k in ("progress", "mmap") if k in import_options}
        fields = {f.name for f in dataclasses.fields(imported.ImportOptions)}
        unknown = sorted(set(import_options) - fields)
        if unknown:
            raise unknown_choice("import option", unknown[0], [*fields, "progress", "mmap"])
        return imported.load_own(name, imported.ImportOptions(**import_options), **extra)
    defaults = dataclasses.asdict(imported.ImportOptions())
    given = [k for k, v in import_options.items() if k not in ("progress", "mmap") and defaults.get(k, v) != v]
    if given:
        raise CnnlabError(f"{given[0]} applies only to your own data (a folder or file), not to {name!r}")
    try:
        spec = get_spec(name)
    except CnnlabError as err:
        raise CnnlabError(
            f"{err}; or give a path to your own data: a folder of images (PATH/<class>/*.png), "
            "a .npz, .csv or .parquet file"
        ) from None
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise CnnlabError(f"data_dir must be a folder path (str or Path) or None, got {data_dir!r:.60}")
    if spec.format == "embedded":
        return _load_embedded(spec)
    scan = locate.scan(spec, data_dir)
    dataset = _first_verified(spec, scan, _load_candidate)
    if dataset is not None:
        return dataset
    if not download:
        raise _not_found(spec, scan, "download=False")
    if locate.offline():
        raise _not_found(
            spec, scan, "$CNNLAB_OFFLINE is set, so no download", ", or unset $CNNLAB_OFFLINE to download it"
        )
    try:
        locate.download(spec)
    except DataError as err:
        raise _not_found(spec, scan, str(err), ", or retry when online") from None
    # Only the cache changed; scanning it alone keeps a bad file elsewhere from hiding the download.
    fresh = locate.scan(spec, data_dir)
    fresh.candidates = [c for c in fresh.candidates if c.origin == "cache"]
    dataset = _first_verified(spec, fresh, _load_candidate)
    if dataset is None:
        raise _not_found(spec, fresh, "the download left no complete copy in the cache")
    return dataset


def describe_datasets(data_dir: str | os.PathLike | None = None) -> list[dict]:
    """One row per dataset for `cnnlab datasets`: where it is, its sizes and checksum state. Never downloads.

    Every file found is verified (hashing is what tells MNIST from Fashion-MNIST
    in a folder that holds one of them under the shared file names).
    """
    rows = []
    for spec in DATASETS.values():
        found, origin, checksum, note = "not found", "", "not checked", ""
        if spec.format == "embedded":
            found, origin = "embedded", "package"
            try:
                _load_embedded(spec)  # np.load checks the zip's CRCs
                checksum = "ok"
            except DataError as err:
                checksum, note = "mismatch", str(err)
        else:
            scan = locate.scan(spec, data_dir)
            try:
                candidate = _first_verified(spec, scan, _check_candidate)
                checksum = "ok" if candidate else "not checked"
            except _BadCopy as err:
                candidate, checksum, note = err.candidate, err.state, str(err)
            if candidate is not None:
                found, origin = str(candidate.folder), candidate.origin
            else:
                note = "; ".join(f"{folder}: {why}" for _, folder, why in scan.looked if why)
        rows.append(
            {
                "name": spec.name,
                "found": found,
                "origin": origin,
                "train_size": spec.train_size,
                "test_size": spec.test_size,
                "channels": spec.channels,
                "image_size": spec.image_size,
                "classes": spec.num_classes,
                "checksum": checksum,
                "licence": spec.licence,
                "note": note,
            }
        )
    return rows
