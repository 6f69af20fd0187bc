"""Reading and writing files safely: bounded reads of regular files, atomic writes, output checks.

Every file cnnlab writes goes through `write_bytes_atomic`: a kill at any moment leaves either the
old or the new file, never a torn one, and a symlink at the path is replaced, never written through.
Given `within` (the run or experiment folder that owns the file), the file's folder must resolve inside
it, so a symlinked sub-folder cannot lead a write out. Every file cnnlab reads from a folder it did not
create goes through `open_regular`: no symlink as the last component, a regular file only (a FIFO,
device or folder is refused without blocking), resolving inside `within`, and no larger than a bound.
`check_output` is the one rule for output paths: never into a run's checkpoints/, never over an
existing file unless the user passed --overwrite.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Run files (config.json, summary.json, metrics.csv, steps.csv, experiment.json) are kilobytes; a run of
# 10,000 epochs with a row every 10% of each still stays well under this.
MAX_RUN_FILE_BYTES = 64 * 2**20


class UnsafeFileError(CnnlabError, ValueError):
    """A file cnnlab will not read or write: a link, a special file, outside its folder, or too large.

    A ValueError too, so readers that treat an unparseable file as "no such data" treat this one alike.
    """


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` (followed through every link) lies inside `folder` (likewise), or is it."""
    real_path, real_folder = os.path.realpath(path), os.path.realpath(folder)
    return real_path == real_folder or real_path.startswith(real_folder.rstrip(os.sep) + os.sep)


def check_inside(path: str | Path, folder: str | Path) -> None:
    """Refuse `path` when it resolves outside `folder` (a symlinked file or sub-folder leading out)."""
    if not is_inside(path, folder):
        raise UnsafeFileError(
            f"{str(path)!r} leads outside {str(folder)!r} through a symbolic link; "
            "cnnlab reads and writes only inside the folder itself"
        )


def _describe(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_regular(path: str | Path, within: str | Path | None = None, limit: int | None = MAX_RUN_FILE_BYTES) -> int:
    """A read-only descriptor of `path`, which must be a regular file (not a link to one) of at most `limit` bytes
    that resolves inside `within` when given. Never blocks: a FIFO or device is refused from its fstat."""
    path = Path(path)
    if within is not None:
        check_inside(path.parent, within)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        if err.errno == errno.ELOOP and path.is_symlink():
            raise UnsafeFileError(
                f"{str(path)!r} is a symbolic link; cnnlab does not follow links in run files"
            ) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{str(path)!r} is {_describe(info.st_mode)}, not a regular file")
        if limit is not None and info.st_size > limit:
            raise UnsafeFileError(f"{str(path)!r} is {info.st_size:,} bytes; the limit is {limit:,}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: str | Path, within: str | Path | None = None, limit: int = MAX_RUN_FILE_BYTES) -> bytes:
    """The contents of a regular file of at most `limit` bytes (see `open_regular`), read with a bound."""
    with os.fdopen(open_regular(path, within, limit), "rb") as f:
        data = f.read(limit + 1)  # a file that grew since fstat is still cut at the bound
    if len(data) > limit:
        raise UnsafeFileError(f"{str(path)!r} is over {limit:,} bytes")
    return data


def read_text(path: str | Path, within: str | Path | None = None, limit: int = MAX_RUN_FILE_BYTES) -> str:
    try:
        return read_bytes(path, within, limit).decode("utf-8")
    except UnicodeDecodeError as err:
        raise UnsafeFileError(f"{str(path)!r} is not UTF-8 text (byte {err.start})") from None


def parse_json(text: str, source: str) -> Any:
    """json.loads with a one-line error for bad syntax and for nesting deep enough to exhaust the stack."""
    try:
        return json.loads(text)
    except RecursionError:
        raise UnsafeFileError(f"{source} is nested too deeply") from None
    except ValueError as err:
        raise UnsafeFileError(f"{source} is not valid JSON ({err})") from None


_confined_to: contextvars.ContextVar[Path | None] = contextvars.ContextVar("cnnlab_confined_to", default=None)


@contextlib.contextmanager
def confined(folder: str | Path | None):
    """Within this block, every atomic write under `folder` must stay inside it (a run's own figures, an eval's
    default output): a symlinked sub-folder or file cannot lead a write elsewhere. None: no confinement."""
    token = _confined_to.set(Path(folder) if folder is not None else None)
    try:
        yield
    finally:
        _confined_to.reset(token)


def write_bytes_atomic(path: str | Path, data: bytes, within: str | Path | None = None) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    The rename replaces whatever entry `path` was (a symlink included) and never writes through it.
    With `within` (default: the folder of an enclosing `confined()`, when `path` is named under it), the
    folder of `path` must resolve inside `within`.
    """
    path = Path(path)
    if within is None:
        owner = _confined_to.get()
        if owner is not None and _named_under(path, owner):
            within = owner
    if within is not None:
        check_inside(path.parent, within)
    if path.is_dir() and not path.is_symlink():
        raise UnsafeFileError(f"{str(path)!r} is a folder; cnnlab writes a file there only where none is")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except OSError as err:
        Path(tmp_name).unlink(missing_ok=True)
        if err.filename in (None, tmp_name):  # a full disk at write or fsync names no file: say which one
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _named_under(path: Path, folder: Path) -> bool:
    """Whether `path` is spelled as a path under `folder` (no links followed): the files a confinement covers."""
    return os.path.abspath(path).startswith(os.path.abspath(folder).rstrip(os.sep) + os.sep)


def make_dirs(path: str | Path, within: str | Path | None = None) -> Path:
    """mkdir -p, refusing a folder that resolves outside `within` (default: an enclosing `confined()` folder)."""
    path = Path(path)
    owner = Path(within) if within is not None else _confined_to.get()
    if owner is not None and _named_under(path, owner):
        check_inside(path, owner) if path.exists() or path.is_symlink() else check_inside(path.parent, owner)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:  # mkdir's "file exists" says nothing useful: say what is in the way
        raise UnsafeFileError(_not_a_folder(Path(err.filename or path))) from None
    except NotADirectoryError as err:
        raise UnsafeFileError(_not_a_folder(Path(err.filename or path))) from None
    if owner is not None and _named_under(path, owner):
        check_inside(path, owner)
    return path


def _not_a_folder(path: Path) -> str:
    """Why a folder cannot be made at `path`, or below it: the first component on the way that is not one."""
    for part in [*reversed(path.parents), path]:
        if part.is_symlink() and not part.exists():
            return f"{str(part)!r} is a symbolic link that leads nowhere (a loop or a missing target), not a folder"
        if part.exists() and not part.is_dir():
            return f"{str(part)!r} is a file, not a folder"
    return f"cannot make the folder {str(path)!r}"


def write_text_atomic(path: str | Path, text: str, within: str | Path | None = None) -> None:
    write_bytes_atomic(path, text.encode(), within)


def write_json(path: str | Path, data: dict[str, Any], within: str | Path | None = None) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n", within)


def read_json(path: str | Path, within: str | Path | None = None, limit: int = MAX_RUN_FILE_BYTES) -> dict[str, Any]:
    """A JSON object from a regular file of bounded size; anything else is an `UnsafeFileError` (one line)."""
    value = parse_json(read_text(path, within, limit), repr(str(path)))
    if not isinstance(value, dict):
        raise UnsafeFileError(f"{str(path)!r} is not a JSON object")
    return value


def read_csv(
    path: str | Path, integers: tuple[str, ...] = (), within: str | Path | None = None, limit: int = MAX_RUN_FILE_BYTES
) -> list[dict[str, Any]]:
    """The rows of a CSV file with a header, numbers parsed (`integers` as int, the rest as float, '' as None).

    A row with more fields than the header, or a value that is not a number, is an `UnsafeFileError`.
    """
    import csv
    import io

    rows = []
    for number, row in enumerate(csv.DictReader(io.StringIO(read_text(path, within, limit), newline="")), 2):
        if None in row:
            raise UnsafeFileError(f"{str(path)!r} line {number} has more fields than its header")
        try:
            rows.append(
                {k: (None if v in ("", None) else int(v) if k in integers else float(v)) for k, v in row.items()}
            )
        except ValueError:
            raise UnsafeFileError(f"{str(path)!r} line {number} holds a value that is not a number") from None
    return rows


def open_append(path: str | Path) -> Any:
    """A text file opened for appending, refusing a symlink or special file at `path` (it was just written)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeFileError(f"{str(path)!r} is not a regular file")
    return os.fdopen(fd, "a", newline="")


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
    resolved = Path(os.path.realpath(path))  # a symlink loop resolves as far as it goes, never raises
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
        raise CnnlabError(
            f"{flag} {str(path)!r} is inside a run's checkpoints/ folder, which only training writes; "
            "choose another path"
        )
    if path.is_dir():
        raise CnnlabError(f"{flag} {str(path)!r} is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise CnnlabError(f"{str(path)!r} already exists; pass --overwrite to replace it, or {flag} another path")
    return path
