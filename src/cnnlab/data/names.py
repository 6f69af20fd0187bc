"""Names for the user's own datasets: `cnnlab datasets add NAME PATH` once, then `--dataset NAME` anywhere.

The names live in one small JSON file in the user's configuration folder: `$CNNLAB_CONFIG/datasets.json`
when `$CNNLAB_CONFIG` names a folder, else `${XDG_CONFIG_HOME:-~/.config}/cnnlab/datasets.json`. It is
configuration, not cache: clearing `~/.cache/cnnlab` must not forget what the user named. The file maps
each name to an absolute path (a folder, or a .npz, .csv or .parquet file), is rewritten atomically on
every change, and is read with a size bound; a damaged file is one line naming it, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from cnnlab.data.catalog import DATASETS
from cnnlab.errors import CnnlabError, DataError, did_you_mean
from cnnlab.files import UnsafeFileError, make_dirs, read_json, write_bytes_atomic

MAX_REGISTRY_BYTES = 1 << 20  # some 5,000 names with long paths; a larger file is not one cnnlab wrote
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SUFFIXES = (".npz", ".csv", ".parquet")  # the files a name may point to (a folder is read by its contents)


def config_dir() -> Path:
    """The user's cnnlab configuration folder (it need not exist yet)."""
    if os.environ.get("CNNLAB_CONFIG"):
        return Path(os.environ["CNNLAB_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "cnnlab"


def registry_path() -> Path:
    return config_dir() / "datasets.json"


def check_name(name: object) -> str:
    """`name` if it can name a dataset: 1-64 of a-z 0-9 - _, starting with a letter or digit, not a catalog name."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise CnnlabError(
            f"dataset name {name!r:.80} is not allowed: use 1 to 64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit (e.g. my-digits)"
        )
    if name in DATASETS:
        raise CnnlabError(f"{name!r} is one of cnnlab's own datasets; choose another name for yours")
    return name


def _read() -> dict[str, str]:
    path = registry_path()
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        data = read_json(path, limit=MAX_REGISTRY_BYTES)
    except UnsafeFileError as err:
        raise DataError(f"{err}; fix or delete {path} (it holds only the names of your datasets)") from None
    except OSError as err:
        if isinstance(err, PermissionError):
            raise
        raise DataError(f"{path}: cannot read it ({err.strerror or err})") from None
    names = data.get("datasets")
    if not isinstance(names, dict) or not all(
        isinstance(k, str) and NAME_PATTERN.fullmatch(k) and isinstance(v, str) and os.path.isabs(v)
        for k, v in names.items()
    ):
        raise DataError(
            f'{path} is damaged: expected {{"datasets": {{NAME: ABSOLUTE_PATH, ...}}}}; fix or delete it '
            "(it holds only the names of your datasets)"
        )
    return dict(names)


def _write(names: dict[str, str]) -> Path:
    path = registry_path()
    make_dirs(path.parent)
    text = json.dumps({"datasets": dict(sorted(names.items()))}, indent=2) + "\n"
    write_bytes_atomic(path, text.encode())
    return path


def _checked_path(path: str | Path) -> Path:
    given = Path(path).expanduser()
    if not given.exists():
        raise DataError(f"{str(path)!r} does not exist; give the folder or .npz, .csv or .parquet file of the dataset")
    # Stored resolved: the readers open a dataset file only where it is, never through a link.
    resolved = given.resolve()
    if resolved.is_file() and resolved.suffix.lower() not in SUFFIXES:
        raise DataError(f"{str(path)!r} is not a dataset file; give a folder, or a .npz, .csv or .parquet file")
    if not resolved.is_file() and not resolved.is_dir():
        raise DataError(f"{str(path)!r} is neither a regular file nor a folder")
    return resolved


def add_name(name: str, path: str | Path) -> Path:
    """Register `name` for the dataset at `path` (replacing what the name meant); returns the absolute path."""
    check_name(name)
    resolved = _checked_path(path)
    names = _read()
    names[name] = str(resolved)
    _write(names)
    return resolved


def remove_name(name: str) -> None:
    """Forget `name`; an unknown name is an error that lists the registered ones."""
    names = _read()
    if name not in names:
        known = ", ".join(sorted(names)) or "none (cnnlab datasets add NAME PATH)"
        raise CnnlabError(f"no dataset is named {name!r}{did_you_mean(name, names)}; the names are: {known}")
    del names[name]
    _write(names)


def resolve_name(name: str) -> Path | None:
    """The path registered for `name` (which may since have gone), or None: not registered, a catalog name, or
    no name at all. The registry is read only for a name it could hold, so a damaged file never stands in
    the way of `--dataset mnist`."""
    if not isinstance(name, str) or name in DATASETS or not NAME_PATTERN.fullmatch(name):
        return None
    found = _read().get(name)
    return Path(found) if found is not None else None


def list_names() -> dict[str, str]:
    """Every registered name and its absolute path, sorted by name."""
    return dict(sorted(_read().items()))
