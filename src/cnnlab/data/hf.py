"""The user's own Hugging Face datasets, read from disk with the `datasets` library (`pip install "cnnlab[hf]"`).

`read_hf(path)` takes a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`, a folder of
`*.parquet` files (the Hub's layout, `data/train-00000-of-00001.parquet`...), or one `.parquet` file, and
returns each image's encoded file (PNG, JPEG... as stored, never decoded here), the labels and the class
names. Decoding, resizing and caching are `imported.py`'s work.

Nothing is downloaded: `HF_DATASETS_OFFLINE` and `HF_HUB_OFFLINE` are on while the library runs, and the
Arrow copy it makes of parquet files goes to a temporary folder in cnnlab's cache, removed afterwards.

Splits: "train", and "test" (or, failing it, "validation", "valid" or "val") as the test split; a parquet
file's split is the word train, test, validation, valid or val in its path. Columns: the image is the
first `Image` feature, else a column named image, img or pixel_values holding encoded files; the label is
a column named label, labels or fine_label, else the first `ClassLabel` feature, whose names become the
classes. An image stored by path (an `Image` feature with no bytes) is read only from inside the
dataset's folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data import locate
from cnnlab.errors import DataError
from cnnlab.extras import require_extra
from cnnlab.files import is_inside, open_regular, read_bytes

MAX_HF_BYTES = 4 << 30  # the data files of one dataset (Arrow or parquet), like a .npz
MAX_IMAGE_BYTES = 64 << 20  # one image file named by path: far above any photo cnnlab would shrink to 224 pixels
MAX_LABEL = 10_000  # as for tables: the largest numeric label taken without class names
IMAGE_COLUMNS = ("image", "img", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "fine_label")
TEST_SPLITS = ("test", "validation", "valid", "val")  # the first one present is the test split
_OFFLINE = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
_CHUNK = 16 << 20


@dataclass
class EncodedImages:
    """A dataset's images as their encoded files, with labels 0..K-1 and class names."""

    train: list[bytes]  # encoded image files (PNG/JPEG bytes) as stored
    train_labels: np.ndarray  # int64
    test: list[bytes] | None
    test_labels: np.ndarray | None
    classes: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    sha256: str = ""


def read_hf(path: Path) -> EncodedImages:
    """Read a Hugging Face dataset on disk (see the module's docstring); problems are one-line DataErrors."""
    path = Path(path)
    if path.is_symlink():
        raise DataError(f"{path} is a symbolic link; give the dataset where it is: {os.path.realpath(path)}")
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    saved = path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())
    if path.is_file() and path.suffix.lower() != ".parquet":
        raise DataError(f"{path}: a Hugging Face dataset is a folder written by save_to_disk, or .parquet files")
    folder = path if path.is_dir() else path.parent
    files = _data_files(path, saved)
    notes: list[str] = []
    with _offline() as datasets, tempfile.TemporaryDirectory(prefix=".hf-", dir=_cache()) as tmp:
        digest = hashlib.sha256()  # after the extra's check: a missing package is said before gigabytes are read
        _hash_files(files, folder, digest)
        if saved:
            splits = _load_saved(datasets, path, notes)
        else:
            splits = _load_parquet(datasets, files, folder, path.is_file(), tmp, notes)
        # Everything is taken out of the Arrow tables before the temporary copy is removed.
        return _encoded(datasets, splits, folder, digest, notes)


# --------------------------------------------------------------------------------------------------- files


def _data_files(path: Path, saved: bool) -> list[Path]:
    """The files the dataset is read from, each a regular file inside its folder, their sizes bounded."""
    if path.is_file():
        files = [path]
    else:
        suffixes = (".arrow", ".json") if saved else (".parquet",)
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes and not p.is_dir())
        if not files:
            raise DataError(
                f"{path}: neither a dataset written by save_to_disk (dataset_dict.json or state.json) nor a folder "
                "of .parquet files"
            )
    total = 0
    folder = path if path.is_dir() else path.parent
    for file in files:
        if file.is_symlink() or not is_inside(file, folder):
            raise DataError(f"{file} is a symbolic link; cnnlab reads a dataset only from the files in its folder")
        total += file.stat().st_size
    if total > MAX_HF_BYTES:
        raise DataError(f"{path}: {total:,} bytes of data, more than cnnlab reads ({MAX_HF_BYTES:,}); take a subset")
    return files


def _hash_files(files: list[Path], folder: Path, digest: Any) -> None:
    """Hash each data file's name and content, so a renamed split or a changed byte changes the sum."""
    for file in files:
        digest.update(str(file.relative_to(folder)).encode() + b"\0")
        with os.fdopen(open_regular(file, limit=MAX_HF_BYTES), "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)


def _cache() -> Path:
    root = locate.cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _offline() -> Iterator[Any]:
    """The `datasets` module, set never to reach the network and to print no progress bars; restored after."""
    saved = {name: os.environ.get(name) for name in _OFFLINE}
    os.environ.update(dict.fromkeys(_OFFLINE, "1"))  # before the first import: the libraries read them then
    try:
        # here: an optional extra, imported only to read such a dataset (and it takes a second)
        datasets = require_extra("hf", "reading a Hugging Face dataset", ("datasets",))["datasets"]
        settings = [(datasets.config, "HF_DATASETS_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE")]
        hub = sys.modules.get("huggingface_hub.constants")  # imported by datasets; read when it was first imported
        settings += [(hub, "HF_HUB_OFFLINE")] if hub is not None else []
        before = [(owner, name, getattr(owner, name)) for owner, name in settings if hasattr(owner, name)]
        bars = datasets.is_progress_bar_enabled()
        for owner, name, _ in before:
            setattr(owner, name, True)
        datasets.disable_progress_bars()
        try:
            yield datasets
        finally:
            for owner, name, value in before:
                setattr(owner, name, value)
            if bars:
                datasets.enable_progress_bars()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------------------------------- splits


def _load_saved(datasets: Any, path: Path, notes: list[str]) -> dict[str, Any]:
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # the library raises many kinds (FileNotFoundError, ArrowInvalid, JSON errors...)
        raise DataError(f"{path}: cannot load it with datasets.load_from_disk ({_one_line(err)})") from None
    if isinstance(loaded, datasets.DatasetDict):
        notes.append(f"Hugging Face DatasetDict (save_to_disk) with splits {', '.join(loaded)}")
        return dict(loaded)
    notes.append("Hugging Face Dataset (save_to_disk), one split: train")
    return {"train": loaded}


def _split_of(relative: Path) -> str | None:
    words = set(re.split(r"[^a-z]+", str(relative).lower()))
    return next((split for split in ("train", *TEST_SPLITS) if split in words), None)


def _load_parquet(
    datasets: Any, files: list[Path], folder: Path, single: bool, tmp: str, notes: list[str]
) -> dict[str, Any]:
    if single:
        groups = {"train": files}  # a file named by itself is the training split, whatever its name
    else:
        groups = {}
        for file in files:
            split = _split_of(file.relative_to(folder))
            if split is not None:
                groups.setdefault(split, []).append(file)
        unnamed = [f for f in files if _split_of(f.relative_to(folder)) is None]
        if not groups:
            groups = {"train": files}
        elif unnamed:
            names = ", ".join(str(f.relative_to(folder)) for f in unnamed[:3])
            notes.append(
                f"ignored {len(unnamed)} parquet file(s) naming no split: {names}{', ...' if len(unnamed) > 3 else ''}"
            )
    notes.append(
        "parquet files: " + "; ".join(f"{split}: {len(group)} file(s)" for split, group in sorted(groups.items()))
    )
    try:
        loaded = datasets.load_dataset(
            "parquet", data_files={s: [str(f) for f in g] for s, g in groups.items()}, cache_dir=tmp
        )
    except Exception as err:  # pyarrow and the library raise many kinds for a damaged file
        raise DataError(f"{folder}: cannot read the parquet files ({_one_line(err)})") from None
    return dict(loaded)


def _pick_splits(splits: dict[str, Any], folder: Path, notes: list[str]) -> tuple[Any, Any | None]:
    names = list(splits)
    if "train" in splits:
        train_name = "train"
    elif len(names) == 1 and names[0] not in TEST_SPLITS:
        train_name = names[0]
        notes.append(f"the one split, {train_name!r}, is the training split")
    else:
        raise DataError(f"{folder}: no 'train' split; the splits are {', '.join(names) or 'none'}")
    test_name = next((s for s in TEST_SPLITS if s in splits), None)
    if test_name not in (None, "test"):
        notes.append(f"the {test_name!r} split is the test split")
    ignored = sorted(set(names) - {train_name, test_name})
    if ignored:
        notes.append(f"ignored splits: {', '.join(ignored)}")
    return splits[train_name], splits[test_name] if test_name else None


# --------------------------------------------------------------------------------------------------- columns


def _describe_feature(feature: Any) -> str:
    names = getattr(feature, "names", None)
    if names is not None:  # a ClassLabel: its names in full could run to a thousand
        return f"ClassLabel of {len(names)} names"
    dtype = getattr(feature, "dtype", None)
    return f"{type(feature).__name__} {dtype}" if isinstance(dtype, str) else type(feature).__name__


def _describe_columns(features: Any) -> str:
    return ", ".join(f"{name} ({_describe_feature(feature)})" for name, feature in features.items())


def _image_column(datasets: Any, features: Any, folder: Path) -> str:
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            return name
    for name in IMAGE_COLUMNS:
        if name in features:
            if not _encoded_kind(datasets, features[name]):
                raise DataError(
                    f"{folder}: the column {name!r} holds {features[name]}, not encoded image files; cnnlab reads "
                    "an Image feature (PNG/JPEG bytes), not arrays of pixels"
                )
            return name
    raise DataError(
        f"{folder}: no image column (an Image feature, or a column named {', '.join(IMAGE_COLUMNS)}); "
        f"the columns are {_describe_columns(features)}"
    )


def _encoded_kind(datasets: Any, feature: Any) -> str | None:
    """ "file" for {bytes, path} structs (an Image feature, or parquet written without its metadata), "bytes"
    for a binary column, else None."""
    if isinstance(feature, datasets.Image):
        return "file"
    if isinstance(feature, dict) and set(feature) == {"bytes", "path"}:
        return "file"
    if isinstance(feature, datasets.Value) and feature.dtype in ("binary", "large_binary"):
        return "bytes"
    return None


def _label_column(datasets: Any, features: Any, folder: Path) -> str:
    for name in LABEL_COLUMNS:
        if name in features:
            return name
    for name, feature in features.items():
        if isinstance(feature, datasets.ClassLabel):
            return name
    raise DataError(
        f"{folder}: no label column (a ClassLabel feature, or a column named {', '.join(LABEL_COLUMNS)}); "
        f"the columns are {_describe_columns(features)}"
    )


# --------------------------------------------------------------------------------------------------- values


def _encoded(datasets: Any, splits: dict[str, Any], folder: Path, digest: Any, notes: list[str]) -> EncodedImages:
    train, test = _pick_splits(splits, folder, notes)
    image, label = _image_column(datasets, train.features, folder), _label_column(datasets, train.features, folder)
    kind = _encoded_kind(datasets, train.features[image])
    label_feature = train.features[label]
    notes.append(
        f"image column {image!r} ({type(train.features[image]).__name__}), label column {label!r} ({_describe_feature(label_feature)})"
    )
    parts = [("train", train)] + ([("test", test)] if test is not None else [])
    for split, ds in parts[1:]:
        missing = [c for c in (image, label) if c not in ds.features]
        if not missing and getattr(ds.features[label], "names", None) != getattr(label_feature, "names", None):
            raise DataError(f"{folder}: the {split} split's label column names other classes than the train split's")
        if missing:
            raise DataError(
                f"{folder}: the {split} split lacks the column {missing[0]!r}; its columns are {_describe_columns(ds.features)}"
            )
    images, raw_labels = [], []
    for split, ds in parts:
        table = ds.select_columns([image, label]).with_format("arrow")[:]
        images.append(_image_bytes(table.column(image), kind, split, folder, digest))
        raw_labels.append(table.column(label).to_pylist())
        notes.append(f"{split}: {len(ds):,} images")
    classes, labels = _labels(datasets, label_feature, raw_labels, [s for s, _ in parts], folder, notes)
    if not images[0]:
        raise DataError(f"{folder}: the train split holds no images")
    test_images, test_labels = (images[1], labels[1]) if len(parts) > 1 else (None, None)
    if test_labels is not None and len(test_labels) and (test_labels < 0).all():
        notes.append("the test split has no labels (all -1): not a labelled test split, ignored")
        test_images = test_labels = None
    elif test_images is not None and not test_images:
        notes.append("the test split holds no images: ignored")
        test_images = test_labels = None
    for split, y in (("train", labels[0]), ("test", test_labels)):
        if y is not None and len(y) and (y < 0).any():
            bad = int(np.flatnonzero(y < 0)[0])
            raise DataError(f"{folder}: image {bad} of the {split} split has the label {int(y[bad])}: no label")
    return EncodedImages(images[0], labels[0], test_images, test_labels, classes, notes, digest.hexdigest())


def _image_bytes(column: Any, kind: str | None, split: str, folder: Path, digest: Any) -> list[bytes]:
    """Each row's encoded file: the stored bytes, or the file its path names inside `folder`."""
    if kind == "bytes":
        stored = column.to_pylist()
        paths: list[Any] = [None] * len(stored)
    else:
        column = column.combine_chunks()
        stored, paths = column.field("bytes").to_pylist(), column.field("path").to_pylist()
    out = []
    for i, (data, name) in enumerate(zip(stored, paths)):
        if data is None:
            if not name:
                raise DataError(f"{folder}: image {i} of the {split} split is empty (no bytes, no path)")
            data = _read_image(folder, name, i, split)
            digest.update(data)
        out.append(data)
    return out


def _read_image(folder: Path, name: str, index: int, split: str) -> bytes:
    target = Path(name) if os.path.isabs(name) else folder / name
    if not is_inside(target, folder):
        raise DataError(
            f"{folder}: image {index} of the {split} split is the file {name!r}, outside the dataset's folder; "
            "cnnlab reads images only from inside it (store the image bytes in the dataset instead)"
        )
    try:
        return read_bytes(target, limit=MAX_IMAGE_BYTES)
    except FileNotFoundError:
        raise DataError(f"{folder}: image {index} of the {split} split, {name!r}, does not exist") from None
    except OSError as err:
        if isinstance(err, PermissionError):
            raise
        raise DataError(f"{folder}: image {index} of the {split} split, {name!r}: {_one_line(err)}") from None


def _labels(
    datasets: Any, feature: Any, raw: list[list[Any]], splits: list[str], folder: Path, notes: list[str]
) -> tuple[tuple[str, ...], list[np.ndarray]]:
    if isinstance(feature, datasets.ClassLabel):
        classes = tuple(str(n) for n in feature.names)
        labels = [_integers(values, split, folder, len(classes) - 1) for values, split in zip(raw, splits)]
        notes.append(f"classes from the ClassLabel feature: {len(classes)}")
        return classes, labels
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        words = sorted({w for values in raw for w in values if w is not None})
        if any(w is None for values in raw for w in values):
            raise DataError(f"{folder}: an image has no label (None)")
        index = {w: i for i, w in enumerate(words)}
        notes.append(f"labels are words: {len(words)} classes, numbered in sorted order")
        return tuple(words), [np.array([index[w] for w in values], dtype=np.int64) for values in raw]
    if isinstance(feature, datasets.Value) and re.fullmatch(r"u?int\d+", str(feature.dtype)):
        labels = [_integers(values, split, folder, MAX_LABEL) for values, split in zip(raw, splits)]
        top = max((int(y.max()) for y in labels if len(y)), default=-1)
        notes.append(f"classes 0..{top}, numbered from the labels (a ClassLabel feature names them)")
        return tuple(str(k) for k in range(top + 1)), labels
    raise DataError(f"{folder}: the label column holds {feature}; expected a ClassLabel, integers or strings")


def _integers(values: list[Any], split: str, folder: Path, bound: int) -> np.ndarray:
    if any(v is None for v in values):
        bad = next(i for i, v in enumerate(values) if v is None)
        raise DataError(f"{folder}: image {bad} of the {split} split has no label (None)")
    labels = np.asarray(values, dtype=np.int64)
    over = np.flatnonzero(labels > bound)
    if len(over):
        i = int(over[0])
        raise DataError(
            f"{folder}: image {i} of the {split} split has the label {int(labels[i])}; labels are 0..{bound}"
        )
    return labels


def _one_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
