"""Writing files safely: atomic writes with normal permissions, timestamped folders, output checks.

Every file cnnlab writes goes through `write_bytes_atomic`: a kill at any moment leaves either the
old or the new file, never a torn one. `check_output` is the one rule for output paths: never into a
run's checkpoints/, never over an existing file unless the user passed --overwrite.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def read_csv(path: str | Path, integers: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The rows of a CSV file with a header, numbers parsed (`integers` as int, the rest as float, '' as None)."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (None if v in ("", None) else int(v) if k in integers else float(v)) for k, v in row.items()}
            for row in rows]


def make_readable(*paths: Path) -> None:
    """Give files the permissions the umask allows (temp files are created private, 0600)."""
    mode = 0o666 & ~umask()
    for path in paths:
        os.chmod(path, mode)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def timestamped_dir(prefix: str, root: str | Path = "runs") -> Path:
    """runs/<prefix>-<YYYYmmdd-HHMMSS>, with a suffix if that exists already."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{prefix}-{stamp}"
    suffix = 1
    while path.exists():  # two runs started in the same second get distinct folders
        suffix += 1
        path = Path(root) / f"{prefix}-{stamp}-{suffix}"
    return path


def inside_checkpoints(path: str | Path) -> bool:
    """Whether `path` lies in a run's checkpoints/ folder (a checkpoints/ whose parent holds a run)."""
    resolved = Path(path).absolute().resolve()
    for folder in resolved.parents:
        if folder.name == "checkpoints" and (folder.parent / "config.json").exists():
            return True
    return False


_overwrite = contextvars.ContextVar("cnnlab_overwrite", default=False)


@contextlib.contextmanager
def overwriting(allowed: bool = True):
    """Within this block, `check_output` lets existing files be replaced (a command's --overwrite)."""
    token = _overwrite.set(allowed)
    try:
        yield
    finally:
        _overwrite.reset(token)


def check_output(path: str | Path, overwrite: bool | None = None, flag: str = "-o") -> Path:
    """Refuse an output path that would replace something the user has.

    Never inside a run's checkpoints/ (those files belong to training); never over an existing file
    unless `overwrite` (default: whether an enclosing `overwriting()` allows it), for a command's own
    earlier output replaced on request.
    """
    path = Path(path)
    overwrite = _overwrite.get() if overwrite is None else overwrite
    if inside_checkpoints(path):
        raise CnnlabError(f"{flag} {str(path)!r} is inside a run's checkpoints/ folder, which only training writes; "
                          "choose another path")
    if path.is_dir():
        raise CnnlabError(f"{flag} {str(path)!r} is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise CnnlabError(f"{str(path)!r} already exists; pass --overwrite to replace it, or {flag} another path")
    return path
