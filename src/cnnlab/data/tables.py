"""The user's own datasets stored as tables of pixels: a Keras-style `.npz` or a Kaggle-style `.csv`.

Both readers return a `Table`: uint8 (N, C, H, W) images at one square size, int64 labels 0..K-1, the
class names, notes for the import report and the sha256 of what was read. They only read and check;
caching, splitting and training live elsewhere (`imported.py`).

npz, the layout of Keras's `mnist.load_data()` saved with `np.savez`: arrays `x_train`, `y_train` and
optionally `x_test`, `y_test` (cnnlab's own `train_images`... names are accepted too), and optionally
`class_names`. Nothing is unpickled (`allow_pickle` is never on: pickle runs code), and each member's
size is checked from its .npy header before a byte of it is decompressed.

CSV, the layout of Kaggle's digit CSVs: a header (`label,pixel0,...`), then one image per row. The
pixel columns are read in order as one H x W image (784 -> 1x28x28) or, when their number is 3 x H x W
(3072 -> 3x32x32), as three colour planes: every red value, then every green, then every blue, the
order of CIFAR-10's own files and of the Kaggle CSVs made from them (not r,g,b interleaved per pixel).
A sibling file with `test` where the name has `train` (mnist_train.csv -> mnist_test.csv) is the test
split when it has the label column too; a Kaggle `test.csv` without labels is ignored, with a note.
The parser works on blocks of rows with numpy (1.2-1.7 s for MNIST's 60,000 rows, 110 MB, on two busy
cores; pandas takes 3.3 s); pixels written as 12.0, with spaces or quoted take a slower path, and anything
else (signs, exponents, fractions) an exact row-by-row one that names the first bad row.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from cnnlab.errors import DataError
from cnnlab.files import open_regular, read_text

MAX_NPZ_BYTES = 4 << 30  # the .npz file itself
MAX_MEMBER_BYTES = 4 << 30  # one array once decompressed, from its .npy header
MAX_NPZ_CONTENT = 8 << 30  # every array read from one file, decompressed
MAX_CSV_BYTES = 2 << 30  # each .csv file
MAX_SIDECAR_BYTES = 1 << 20  # a classes.txt
MAX_LABEL = 10_000  # the largest label taken without class names: far above any image benchmark's classes
LABEL_COLUMNS = ("label", "labels", "y", "class", "target")
_CHUNK = 16 << 20  # bytes hashed or decompressed per step
_ROWS = 4096  # images converted per step, so a float copy of the whole set never exists
_CSV_BLOCK = 4 << 20  # bytes of CSV rows parsed per step: bounds the index arrays to some 100 MB


@dataclass
class Table:
    """A dataset read from a table: pixel arrays at one fixed square size."""

    train_images: np.ndarray  # uint8 (N, C, H, W), C = 1 or 3
    train_labels: np.ndarray  # int64 (N,), values 0..K-1
    test_images: np.ndarray | None  # None when the file has no test part
    test_labels: np.ndarray | None
    classes: tuple[str, ...]
    notes: list[str] = field(default_factory=list)  # lines for the import report
    sha256: str = ""  # content hash of the file(s) read


# --------------------------------------------------------------------------------------------------- shared


def _open(path: Path, limit: int) -> int:
    """A descriptor of the regular file `path`, at most `limit` bytes; a link is refused with its target named."""
    if path.is_symlink():
        raise DataError(
            f"{path} is a symbolic link; cnnlab reads a dataset file only where it is: give {os.path.realpath(path)}"
        )
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        return open_regular(path, limit=limit)
    except OSError as err:
        if isinstance(err, PermissionError):
            raise
        raise DataError(f"{path}: cannot open ({err.strerror or err})") from None


def _one_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _square(height: int, width: int, where: str) -> None:
    if height != width:
        raise DataError(
            f"{where}: images are {height}x{width} pixels; cnnlab trains on square images: "
            f"resize (or pad) them to {max(height, width)}x{max(height, width)} first"
        )
    if height < 1:
        raise DataError(f"{where}: images of {height}x{width} pixels hold nothing")


def _side(pixels: int) -> tuple[int, int] | None:
    """(channels, side) for `pixels` values per image: side^2 (one channel) or 3 * side^2, else None."""
    for channels in (1, 3):
        if pixels % channels == 0:
            side = int(round((pixels // channels) ** 0.5))
            if side > 0 and side * side * channels == pixels:
                return channels, side
    return None


def _check_labels(labels: np.ndarray, name: str, where: str, classes: int | None) -> None:
    """Labels must be 0..classes-1 (or 0..MAX_LABEL without class names): one line naming the first bad one."""
    if not len(labels):
        return
    bound = (classes if classes is not None else MAX_LABEL + 1) - 1
    bad = np.flatnonzero((labels < 0) | (labels > bound))
    if len(bad):
        i = int(bad[0])
        limit = f"the {classes} class names name 0..{bound}" if classes is not None else f"at most {MAX_LABEL:,}"
        raise DataError(f"{where}: {name}[{i}] is {int(labels[i])}; labels must be integers 0 or more, {limit}")


def _numbered_classes(labels: list[np.ndarray]) -> tuple[str, ...]:
    top = max((int(a.max()) for a in labels if len(a)), default=-1)
    return tuple(str(k) for k in range(top + 1))


# --------------------------------------------------------------------------------------------------- npz

# The arrays of each accepted layout: (train images, train labels, test images, test labels).
_NPZ_LAYOUTS = (
    ("x_train", "y_train", "x_test", "y_test"),  # Keras
    ("train_images", "train_labels", "test_images", "test_labels"),  # cnnlab's own samples
)


def read_npz(path: Path) -> Table:
    """Read a Keras-layout .npz (see the module's docstring); a bad file raises DataError in one line."""
    path = Path(path)
    with os.fdopen(_open(path, MAX_NPZ_BYTES), "rb") as f:
        digest = hashlib.sha256()
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
        f.seek(0)
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise DataError(
                f"{path}: not an .npz archive ({_one_line(err)}); save the arrays with numpy.savez(path, x_train=..., y_train=...)"
            ) from None
        with archive:
            arrays, notes = _npz_arrays(archive, path)
    table = _npz_table(arrays, path, notes)
    table.sha256 = digest.hexdigest()
    return table


def _npz_arrays(archive: zipfile.ZipFile, path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    members = {info.filename[: -len(".npy")]: info for info in archive.infolist() if info.filename.endswith(".npy")}
    layout = next((keys for keys in _NPZ_LAYOUTS if keys[0] in members and keys[1] in members), None)
    if layout is None:
        found = ", ".join(sorted(members)) or "no arrays"
        raise DataError(
            f"{path}: expected arrays x_train and y_train (and x_test, y_test), the layout of Keras's "
            f"mnist.load_data() saved with numpy.savez; found {found}"
        )
    x_test, y_test = layout[2], layout[3]
    if (x_test in members) != (y_test in members):
        have, lack = (x_test, y_test) if x_test in members else (y_test, x_test)
        raise DataError(f"{path}: has {have} but no {lack}; give both test arrays or neither")
    wanted = [k for k in (*layout, "class_names") if k in members]
    notes = []
    ignored = sorted(set(members) - set(wanted))
    if ignored:
        notes.append(f"ignored arrays: {', '.join(ignored)}")
    arrays, total = {}, 0
    for key in wanted:
        array = _read_member(
            archive, members[key], key, path, text=key == "class_names", budget=MAX_NPZ_CONTENT - total
        )
        total += array.nbytes
        arrays[key] = array
    # One naming for the rest of the reader, whatever the file used.
    return {role: arrays[k] for role, k in zip(_NPZ_LAYOUTS[0], layout) if k in arrays} | (
        {"class_names": arrays["class_names"]} if "class_names" in arrays else {}
    ), notes


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path: Path, text: bool, budget: int
) -> np.ndarray:
    """One .npy member, its dtype and size checked from its header before its data is decompressed."""
    where = f"{path}: {key}"
    try:
        with archive.open(info) as member:
            shape, fortran, dtype = _npy_header(member, where)
            kinds = "USiuf" if text else "iufb"
            if dtype.hasobject:
                raise DataError(
                    f"{where} holds Python objects, which load only by unpickling (and pickle can run code); "
                    "cnnlab never unpickles: save plain numeric arrays (and class names as a string array)"
                )
            if dtype.kind not in kinds or dtype.fields is not None:
                raise DataError(f"{where} holds {dtype} values; expected {'strings' if text else 'numbers'}")
            count = int(np.prod(shape, dtype=object))
            size = count * dtype.itemsize
            if size > min(MAX_MEMBER_BYTES, budget):
                raise DataError(
                    f"{where}: an array of shape {shape} and dtype {dtype} is {size:,} bytes, more than cnnlab "
                    f"reads from one .npz ({min(MAX_MEMBER_BYTES, budget):,} left); store uint8 pixels or split it"
                )
            array = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
            flat = array.reshape(-1).view(np.uint8)  # the array's own bytes: filled in place, chunk by chunk
            done = 0
            while done < size:
                piece = member.read(min(_CHUNK, size - done))
                if not piece:
                    raise DataError(f"{where} is truncated ({done:,} of {size:,} bytes); the file is damaged")
                flat[done : done + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
                done += len(piece)
            if member.read(1):  # reading to the end also makes zipfile check the member's CRC
                raise DataError(f"{where} has bytes past the array its header describes; the file is damaged")
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as err:
        if isinstance(err, PermissionError):
            raise
        raise DataError(f"{where}: cannot read ({_one_line(err)}); the file is damaged or not numpy's .npz") from None
    return array.T if fortran else array


def _npy_header(member: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    try:
        version = npy_format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(member)
        else:
            raise ValueError(f".npy format version {version} (only 1.0 and 2.0 hold plain arrays)")
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise DataError(f"{where}: not a .npy array ({_one_line(err)})") from None
    return tuple(int(d) for d in shape), bool(fortran), dtype


def _npz_table(arrays: dict[str, np.ndarray], path: Path, notes: list[str]) -> Table:
    for key in ("x_train", "y_train", "x_test", "y_test"):
        if key in arrays:
            notes.append(f"{key} {tuple(arrays[key].shape)} {arrays[key].dtype}")
    has_test = "x_test" in arrays
    parts = [("x_train", arrays["x_train"])] + ([("x_test", arrays["x_test"])] if has_test else [])
    images = _images_nchw(parts, path, notes)
    labels = [_npz_labels(arrays[y], y, len(x), path, notes) for x, y in zip(images, ("y_train", "y_test"))]
    if not len(images[0]):
        raise DataError(f"{path}: x_train holds no images")
    names = arrays.get("class_names")
    if names is not None:
        classes = _class_names(names, path)
        notes.append(f"classes from class_names: {len(classes)}")
    else:
        classes = _numbered_classes(labels)
        notes.append(f"classes 0..{len(classes) - 1}, numbered from the labels (add a class_names array to name them)")
    for name, y in zip(("y_train", "y_test"), labels):
        _check_labels(y, name, str(path), len(classes) if names is not None else None)
    test_images, test_labels = (images[1], labels[1]) if has_test else (None, None)
    if test_images is not None and not len(test_images):
        notes.append("x_test holds no images: no test split")
        test_images = test_labels = None
    return Table(images[0], labels[0], test_images, test_labels, classes, notes)


def _layout(shape: tuple[int, ...], key: str, where: Path) -> tuple[str, int, int]:
    """("nhw" | "nhwc" | "nchw" | "flat", channels, side) of an image array's shape; refuses what is not square."""
    ndim = len(shape)
    if ndim == 3:
        _square(shape[1], shape[2], f"{where}: {key} {shape}")
        return "nhw", 1, shape[1]
    if ndim == 4:
        last, first = shape[3] in (1, 3), shape[1] in (1, 3)
        if last and not (first and shape[2] == shape[3] and shape[1] != shape[2]):  # Keras's own order wins a tie
            _square(shape[1], shape[2], f"{where}: {key} {shape} (channels last)")
            return "nhwc", shape[3], shape[1]
        if first:
            _square(shape[2], shape[3], f"{where}: {key} {shape} (channels first)")
            return "nchw", shape[1], shape[2]
    if ndim == 2:
        found = _side(shape[1])
        if found is not None:
            return "flat", found[0], found[1]
        raise DataError(
            f"{where}: {key} {shape} holds rows of {shape[1]} values, which make no square image "
            "(H*H grey or 3*H*H colour values); reshape it to (N, H, W) or (N, H, W, C)"
        )
    raise DataError(
        f"{where}: {key} has shape {shape}; expected images as (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3"
    )


def _images_nchw(parts: list[tuple[str, np.ndarray]], path: Path, notes: list[str]) -> list[np.ndarray]:
    """uint8 (N, C, H, W) copies of the image arrays, converted alike (one scale for train and test)."""
    layouts = [_layout(tuple(x.shape), key, path) for key, x in parts]
    if len({(c, s) for _, c, s in layouts}) > 1:
        shapes = ", ".join(f"{key} {c}x{s}x{s}" for (key, _), (_, c, s) in zip(parts, layouts))
        raise DataError(f"{path}: the images differ in shape ({shapes}); train and test must match")
    _, channels, side = layouts[0]
    for (key, _), (form, _, _) in zip(parts, layouts):
        if form == "nhwc":
            notes.append(f"{key} read channels last (N, H, W, C), as Keras stores it")
        elif form == "flat":
            what = "three colour planes (r..., g..., b...)" if channels == 3 else "one grey image"
            notes.append(f"{key} rows of {channels * side * side} values read as {what} of {side}x{side}")
    scale = _pixel_scale([x for _, x in parts], [k for k, _ in parts], path, notes)
    out = []
    for (_, x), (form, _, _) in zip(parts, layouts):
        images = np.empty((len(x), channels, side, side), dtype=np.uint8)
        for start in range(0, len(x), _ROWS):
            block = x[start : start + _ROWS]
            if form == "nhwc":
                block = block.transpose(0, 3, 1, 2)
            images[start : start + len(block)] = _to_uint8(block, scale).reshape(len(block), channels, side, side)
        out.append(images)
    return out


def _pixel_scale(arrays: list[np.ndarray], keys: list[str], path: Path, notes: list[str]) -> float | None:
    """None for uint8; else the factor that takes the values to 0..255, after checking every value."""
    dtype = arrays[0].dtype
    if any(a.dtype != dtype for a in arrays):
        raise DataError(f"{path}: {' and '.join(keys)} differ in dtype ({', '.join(str(a.dtype) for a in arrays)})")
    if dtype == np.uint8:
        return None
    if dtype.kind == "b":
        raise DataError(f"{path}: {keys[0]} holds booleans; store pixels as uint8 0..255 or floats in [0, 1]")
    lo, hi = np.inf, -np.inf
    for key, a in zip(keys, arrays):
        for start in range(0, len(a), _ROWS):
            block = a[start : start + _ROWS]
            if dtype.kind == "f" and not np.isfinite(block).all():
                bad = int(np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))[0]) + start
                raise DataError(f"{path}: {key}[{bad}] holds NaN or infinite values; cnnlab reads finite pixels only")
            if block.size:
                lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if lo < 0 or hi > 255:
        raise DataError(
            f"{path}: {' and '.join(keys)} hold values from {lo:g} to {hi:g}; cnnlab reads pixels 0..255 or "
            "floats in [0, 1] (undo any normalisation first)"
        )
    if dtype.kind in "iu":
        notes.append(f"{dtype} pixels 0..255 stored as uint8")
        return 1.0
    if hi <= 1:
        notes.append(f"{dtype} pixels in [0, 1] ({lo:g}..{hi:g}), scaled by 255 and rounded to uint8")
        return 255.0
    notes.append(f"{dtype} pixels in [0, 255] ({lo:g}..{hi:g}), rounded to uint8")
    return 1.0


def _to_uint8(block: np.ndarray, scale: float | None) -> np.ndarray:
    if scale is None:
        return block
    if block.dtype.kind in "iu":
        return block.astype(np.uint8)
    return np.rint(block.astype(np.float32) * np.float32(scale)).clip(0, 255).astype(np.uint8)


def _npz_labels(y: np.ndarray, key: str, count: int, path: Path, notes: list[str]) -> np.ndarray:
    where = f"{path}: {key} {tuple(y.shape)}"
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # Keras's CIFAR-10 gives labels as a (N, 1) column
        notes.append(f"{key} column (N, 1) read as a list of labels")
    if y.ndim == 2:
        if not (((y == 0) | (y == 1)).all() and (y.sum(axis=1) == 1).all()):
            raise DataError(f"{where}: two-dimensional labels must be one-hot rows (a single 1 in each)")
        notes.append(f"{key} one-hot rows of {y.shape[1]}: the class is where the 1 is")
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise DataError(f"{where}: expected one integer label per image, (N,), (N, 1) or one-hot (N, K)")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.rint(y)).any():
            bad = int(np.flatnonzero(~np.isfinite(y) | (y != np.rint(y)))[0])
            raise DataError(f"{path}: {key}[{bad}] is {y[bad]}; labels must be integers")
    elif y.dtype.kind not in "iub":
        raise DataError(f"{where}: labels of dtype {y.dtype}; expected integers")
    if len(y) != count:
        images = "x_train" if key == "y_train" else "x_test"
        raise DataError(f"{path}: {images} holds {count:,} images but {key} {len(y):,} labels; they must match")
    labels = y.astype(np.int64)
    if y.dtype.kind == "u" and y.dtype.itemsize == 8 and (y > np.iinfo(np.int64).max).any():
        raise DataError(f"{path}: {key} holds labels past 2**63; labels must be 0..K-1")
    return labels


def _class_names(names: np.ndarray, path: Path) -> tuple[str, ...]:
    if names.ndim != 1 or names.dtype.kind not in "US" or not len(names):
        raise DataError(f"{path}: class_names must be a list of strings, got {names.dtype} {tuple(names.shape)}")
    try:
        classes = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names.tolist())
    except UnicodeDecodeError:
        raise DataError(f"{path}: class_names are not UTF-8 text") from None
    _check_names(classes, f"{path}: class_names")
    return classes


def _check_names(classes: tuple[str, ...], where: str) -> None:
    if any(not c.strip() for c in classes):
        raise DataError(f"{where}: a class name is empty")
    seen: set[str] = set()
    for c in classes:
        if c in seen:
            raise DataError(f"{where}: the class name {c!r} comes twice")
        seen.add(c)


# --------------------------------------------------------------------------------------------------- CSV


@dataclass
class _Rows:
    """One CSV file parsed: pixels (N, P) and the label field of each row, as written."""

    path: Path
    columns: list[str]
    label_column: int
    pixels: np.ndarray
    labels: list[bytes]


def read_csv(path: Path) -> Table:
    """Read a Kaggle-layout CSV (see the module's docstring); a bad file raises DataError in one line."""
    path = Path(path)
    digest = hashlib.sha256()
    notes: list[str] = []
    train = _read_rows(path, digest, notes)
    channels, side = _csv_shape(len(train.columns) - 1, path)
    if channels == 3:
        notes.append(
            f"{len(train.columns) - 1} pixel columns read as 3x{side}x{side}: three colour planes, every red value, "
            "then green, then blue (CIFAR-10's order), not r,g,b per pixel"
        )
    test = _test_sibling(path, train, digest, notes)
    sidecar = _sidecar(path)
    classes, labels = _csv_labels([r for r in (train, test) if r is not None], sidecar, notes)
    shape = (-1, channels, side, side)
    table = Table(
        train.pixels.reshape(shape),
        labels[0],
        test.pixels.reshape(shape) if test is not None else None,
        labels[1] if test is not None else None,
        classes,
        notes,
    )
    table.sha256 = digest.hexdigest()
    return table


def _read_rows(path: Path, digest: Any, notes: list[str], columns: list[str] | None = None) -> _Rows:
    with os.fdopen(_open(path, MAX_CSV_BYTES), "rb") as f:
        data = f.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise DataError(f"{path} is over {MAX_CSV_BYTES:,} bytes; split it")
    digest.update(data)
    if b"\r" in data:  # Windows line ends; the one copy of the file this reader makes, and only for them
        data = data.replace(b"\r\n", b"\n")
    end = data.find(b"\n")
    names = _header(data if end < 0 else data[:end], path)
    if columns is not None and len(names) != len(columns):
        raise DataError(f"{path}: {len(names)} columns where the train file has {len(columns)}")
    label = _label_column(names, path, notes if columns is None else None)
    pixels, labels = _parse_body(data, len(data) if end < 0 else end + 1, len(names), label, path)
    notes.append(f"{path.name}: {len(labels):,} rows of {len(names) - 1} pixels and a label ({names[label]!r})")
    return _Rows(path, names, label, pixels, labels)


def _header(line: bytes, path: Path) -> list[str]:
    try:
        text = line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        raise DataError(f"{path}: the header line is not UTF-8 text") from None
    names = [n.strip().strip('"').strip() for n in text.split(",")]
    if len(names) < 2:
        raise DataError(f"{path}: the first line must be a header naming the columns, e.g. label,pixel0,pixel1,...")
    if all(_is_number(n) for n in names):
        raise DataError(
            f"{path}: the first line holds numbers, not column names; add a header line "
            f"(label,pixel0,...,pixel{len(names) - 2})"
        )
    return names


def _is_number(text: str | bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label_column(names: list[str], path: Path, notes: list[str] | None) -> int:
    lowered = [n.lower() for n in names]
    for wanted in LABEL_COLUMNS:
        if wanted in lowered:
            return lowered.index(wanted)
    if notes is not None:
        notes.append(f"no column named {', '.join(LABEL_COLUMNS)}: the first column, {names[0]!r}, is the label")
    return 0


def _csv_shape(pixels: int, path: Path) -> tuple[int, int]:
    found = _side(pixels)
    if found is None:
        raise DataError(
            f"{path}: {pixels} pixel columns make no square image (H*H grey values or 3*H*H colour values, "
            "e.g. 784 = 28x28, 3072 = 3x32x32); cnnlab trains on square images: resize them first"
        )
    return found


def _parse_body(data: bytes, begin: int, columns: int, label: int, path: Path) -> tuple[np.ndarray, list[bytes]]:
    """Pixels (N, columns - 1) as uint8 and each row's label field, from the rows of data[begin:], parsed a
    block of rows at a time (the rows are never copied out of `data`)."""
    stop = _content_end(data, begin)  # blank lines at the end are no rows
    if stop == begin:
        raise DataError(f"{path}: no rows below the header")
    if stop < len(data) and data[stop] == 10:
        stop += 1  # the last row's own newline
    else:
        data = data[:stop] + b"\n"  # the last row has none: the parser counts on one
        stop += 1
    pixels = np.empty((data.count(b"\n", begin, stop), columns - 1), dtype=np.uint8)
    labels: list[bytes] = []
    start, row = begin, 0
    while start < stop:
        cut = data.rfind(b"\n", start, min(start + _CSV_BLOCK, stop)) + 1
        if cut <= start:  # one row longer than a block
            cut = data.index(b"\n", start) + 1
        row += _parse_block(data, start, cut, columns, label, pixels, labels, row, path)
        start = cut
    return pixels, labels


_BLANK = np.zeros(256, dtype=bool)
_BLANK[list(b" \t\r\n")] = True


def _content_end(data: bytes, begin: int) -> int:
    """The index just past the last character of data[begin:] that is not blank, found from the end."""
    end = len(data)
    while end > begin:
        low = max(begin, end - (1 << 16))
        filled = np.flatnonzero(~_BLANK[np.frombuffer(data, dtype=np.uint8, count=end - low, offset=low)])
        if len(filled):
            return low + int(filled[-1]) + 1
        end = low
    return begin


def _parse_block(
    body: bytes,
    start: int,
    stop: int,
    columns: int,
    label: int,
    out: np.ndarray,
    labels: list[bytes],
    row: int,
    path: Path,
) -> int:
    """Parse the whole rows in body[start:stop] into out[row:...] and labels; returns the number of rows."""
    text = np.frombuffer(body, dtype=np.uint8, count=stop - start, offset=start)
    first, last = _fields(text, columns, row, path)
    labels.extend(body[start + s : start + e] for s, e in zip(first[:, label].tolist(), last[:, label].tolist()))
    values = _digits(text, *_pixel_fields(first, last, label))
    if values is None:
        # "12.0", " 12" or "\"12\"": the same integers written otherwise; dropping the decimals of zero, spaces and
        # quotes from the pixel fields (the labels are taken already) leaves the plain form, at C speed.
        plain = body[start:stop].translate(None, b' \t"').replace(b".0,", b",").replace(b".0\n", b"\n")
        values = _digits(*_plain_fields(plain, columns, label, row, path))
        if values is None:  # "12.00", "12.": a regular expression, slower than replace
            plain = _ZERO_DECIMALS.sub(b"", plain)
            values = _digits(*_plain_fields(plain, columns, label, row, path))
        if values is None:  # floats, signs, exponents...: each row parsed exactly, naming the first bad one
            _, first, last = _plain_fields(plain, columns, label, row, path)
            values = _exact(plain, 0, first, last, row, path)
    if (values > 255).any():
        bad_row, bad_col = (int(i[0]) for i in np.nonzero(values > 255))
        raise DataError(
            f"{path}: line {row + bad_row + 2} has the pixel value {int(values[bad_row, bad_col])} (column "
            f"{bad_col + 1 + (bad_col >= label)}); pixels must be integers 0..255"
        )
    out[row : row + len(values)] = values
    return len(values)


_ZERO_DECIMALS = re.compile(rb"(?<=\d)\.0*(?=[,\n])")


def _plain_fields(
    plain: bytes, columns: int, label: int, row: int, path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text, starts, ends) of the pixel fields of rows rewritten in their plain form."""
    text = np.frombuffer(plain, dtype=np.uint8)
    first, last = _pixel_fields(*_fields(text, columns, row, path), label)
    return text, first, last


def _fields(text: np.ndarray, columns: int, row: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of every field, each (rows, columns), of the rows in `text`; a row of the wrong width
    is one line naming it."""
    newlines = np.flatnonzero(text == 10)
    count = len(newlines)
    ends = np.flatnonzero((text == 44) | (text == 10))  # where each field ends: a comma or the row's newline
    if len(ends) != count * columns or not (text[ends[columns - 1 :: columns]] == 10).all():
        fields = np.diff(np.searchsorted(ends, newlines, side="right"), prepend=0)
        bad = int(np.flatnonzero(fields != columns)[0])
        raise DataError(
            f"{path}: line {row + bad + 2} has {int(fields[bad])} fields where the header has {columns}; "
            "every row needs a label and each pixel (a quoted field holding a comma is not read)"
        )
    ends32 = ends.astype(np.int32)  # a block is far below 2 GiB: half the memory traffic of int64
    starts = np.empty_like(ends32)
    starts[0] = 0
    starts[1:] = ends32[:-1] + 1
    return starts.reshape(count, columns), ends32.reshape(count, columns)


def _pixel_fields(first: np.ndarray, last: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
    """The (starts, ends) of the pixel fields alone, as C arrays (the gathers below run faster on them)."""
    if label == 0:
        return np.ascontiguousarray(first[:, 1:]), np.ascontiguousarray(last[:, 1:])
    if label == first.shape[1] - 1:
        return np.ascontiguousarray(first[:, :-1]), np.ascontiguousarray(last[:, :-1])
    return np.delete(first, label, axis=1), np.delete(last, label, axis=1)


def _digits(text: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray | None:
    """The values of fields that are each 1 to 3 decimal digits, from three gathers; None if any field is not.

    A field's last three characters are gathered for every field at once; those before its start (a comma,
    or the previous field) are masked by its length."""
    length = last - first
    if length.min() < 1 or length.max() > 3:
        return None
    digit = text - np.uint8(48)  # uint8: a character that is no digit wraps past 9
    ones = digit[last - 1]
    tens = digit[last - 2] * (length >= 2)
    hundreds = digit[last - 3] * (length == 3)
    if ones.max() > 9 or tens.max() > 9 or hundreds.max() > 9:
        return None
    return ones.astype(np.int16) + tens.astype(np.int16) * 10 + hundreds.astype(np.int16) * 100


def _exact(body: bytes, start: int, first: np.ndarray, last: np.ndarray, row: int, path: Path) -> np.ndarray:
    """Each field parsed as a number, which must be an integer 0..255 (1.0 passes): one line naming the row."""
    values = np.empty(first.shape, dtype=np.int16)
    for r, (s_row, e_row) in enumerate(zip(first.tolist(), last.tolist())):
        fields = [body[start + s : start + e] for s, e in zip(s_row, e_row)]
        try:
            numbers = np.array([float(f) for f in fields])
        except ValueError:
            bad = next(f for f in fields if not _is_number(f))
            raise DataError(
                f"{path}: line {row + r + 2} holds the pixel {bad.decode('utf-8', 'replace')[:20]!r}, not a number; "
                "pixels must be integers 0..255"
            ) from None
        wrong = np.flatnonzero(~np.isfinite(numbers) | (numbers != np.rint(numbers)) | (numbers < 0) | (numbers > 255))
        if len(wrong):
            raise DataError(
                f"{path}: line {row + r + 2} has the pixel value {numbers[wrong[0]]:g}; pixels must be integers "
                "0..255 (scale floats to 0..255 and round them first)"
            )
        values[r] = numbers
    return values


def _test_sibling(path: Path, train: _Rows, digest: Any, notes: list[str]) -> _Rows | None:
    """The labelled test file next to a train file (mnist_train.csv -> mnist_test.csv), or None."""
    name = path.name
    match = re.search("train", name, re.IGNORECASE)
    if not match:
        return None
    word = {"train": "test", "TRAIN": "TEST", "Train": "Test"}.get(match.group(0), "test")
    sibling = path.with_name(name[: match.start()] + word + name[match.end() :])
    if sibling.is_file():
        with os.fdopen(_open(sibling, MAX_CSV_BYTES), "rb") as f:
            head = f.readline(1 << 20)
        names = _header(head.split(b"\n")[0], sibling)
        if len(names) == len(train.columns) - 1:
            notes.append(f"{sibling.name} has no label column: not a labelled test split, ignored")
            return None
        if len(names) != len(train.columns):
            notes.append(f"{sibling.name} has {len(names)} columns, not {len(train.columns)}: ignored")
            return None
        rows = _read_rows(sibling, digest, notes, columns=train.columns)
        notes.append(f"test split from {sibling.name}")
        return rows
    return None


def _sidecar(path: Path) -> tuple[str, ...] | None:
    """Class names from `<name>.classes.txt` or `classes.txt` next to the CSV, one a line, or None."""
    for sidecar in (path.with_name(path.stem + ".classes.txt"), path.with_name("classes.txt")):
        if sidecar.is_file():
            try:
                text = read_text(sidecar, limit=MAX_SIDECAR_BYTES)
            except (OSError, ValueError) as err:
                if isinstance(err, PermissionError):
                    raise
                raise DataError(f"{sidecar}: cannot read the class names ({_one_line(err)})") from None
            classes = tuple(line.strip() for line in text.splitlines() if line.strip())
            if not classes:
                raise DataError(f"{sidecar}: no class names (one a line)")
            _check_names(classes, str(sidecar))
            return classes
    return None


def _csv_labels(
    parts: list[_Rows], sidecar: tuple[str, ...] | None, notes: list[str]
) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """Class names and int64 labels for each file: numbers as they are, words mapped to their sorted order."""
    texts = [[t.strip().strip(b'"').strip() for t in p.labels] for p in parts]
    numeric = _is_number(texts[0][0])
    if not numeric:
        decoded = []
        for part, values in zip(parts, texts):
            try:
                words = [v.decode("utf-8") for v in values]
            except UnicodeDecodeError:
                bad = next(i for i, v in enumerate(values) if not _decodes(v))
                raise DataError(f"{part.path}: line {bad + 2}: the label is not UTF-8 text") from None
            if "" in words:
                raise DataError(f"{part.path}: line {words.index('') + 2} has an empty label")
            decoded.append(words)
        found = sorted(set().union(*decoded))
        if sidecar is not None:
            unknown = [w for w in found if w not in sidecar]
            if unknown:
                raise DataError(f"{parts[0].path}: the label {unknown[0]!r} is not among the classes in classes.txt")
            classes = sidecar
            notes.append(f"classes from the classes.txt next to the file: {len(classes)}")
        else:
            classes = tuple(found)
            notes.append(
                f"labels are words: {len(classes)} classes, numbered in sorted order ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})"
            )
        index = {c: i for i, c in enumerate(classes)}
        return classes, [np.array([index[w] for w in words], dtype=np.int64) for words in decoded]
    bound = len(sidecar) - 1 if sidecar is not None else MAX_LABEL
    labels = []
    for part, values in zip(parts, texts):
        out = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            number: int | None
            try:
                number = int(v)
            except ValueError:
                number = _integral(v)
            if number is None or number < 0 or number > bound:
                why = f"the {bound + 1} classes in classes.txt" if sidecar is not None else "at most 10,000 classes"
                raise DataError(
                    f"{part.path}: line {i + 2} has the label {v.decode('utf-8', 'replace')[:20]!r}; labels must be "
                    f"integers 0..{bound:,} ({why}), or words throughout"
                )
            out[i] = number
        labels.append(out)
    if sidecar is not None:
        classes = sidecar
        notes.append(f"classes from the classes.txt next to the file: {len(classes)}")
    else:
        classes = _numbered_classes(labels)
        notes.append(
            f"classes 0..{len(classes) - 1}, numbered from the labels (a classes.txt next to the file names them)"
        )
    return classes, labels


def _integral(text: bytes) -> int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if np.isfinite(number) and number == int(number) else None


def _decodes(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
