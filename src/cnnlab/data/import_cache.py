"""What the decoded-data cache of your own datasets holds, and clearing it: `cnnlab datasets cache [--clear]`.

An import (`imported.py`) decodes a folder or file once into `<cache>/imported/<key>.bin`, found again through
`index/<stat key>.json` (which names the source path). A folder that changed is imported anew and its old file
stays: nothing prunes it, so this lists the files with the sources that led to them, and `clear_cache` removes
them all (each is only time saved: the next use imports again). Only regular files of the cache's own names are
read or removed; a link there is removed as a link, never followed.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.data.imported import cache_folder
from cnnlab.files import UnsafeFileError, read_json


@dataclass
class CacheFile:
    path: Path
    bytes: int
    modified: float  # when it was imported (epoch seconds)
    sources: list[str] = field(default_factory=list)  # the dataset paths whose imports led to it


def _regular(path: Path) -> os.stat_result | None:
    with contextlib.suppress(OSError):
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode):
            return info
    return None


def cache_files() -> list[CacheFile]:
    """The cache's data files, newest first, each with the sources its index entries name."""
    folder = cache_folder()
    sources: dict[str, list[str]] = {}
    index = folder / "index"
    if index.is_dir() and not index.is_symlink():
        for entry in sorted(index.glob("*.json")):
            if _regular(entry) is None:
                continue
            with contextlib.suppress(OSError, UnsafeFileError):
                record = read_json(entry, limit=1 << 16)
                key, path = record.get("key"), record.get("path")
                if isinstance(key, str) and isinstance(path, str):
                    sources.setdefault(key[:40], []).append(path)
    files = []
    if folder.is_dir() and not folder.is_symlink():
        for path in folder.glob("*.bin"):
            info = _regular(path)
            if info is not None:
                found = sorted(set(sources.get(path.stem, [])))
                files.append(CacheFile(path, info.st_size, info.st_mtime, found))
    return sorted(files, key=lambda f: -f.modified)


def clear_cache() -> tuple[int, int]:
    """Remove every data file and index entry (and leftover temp files) of the cache: (files removed, bytes freed)."""
    folder = cache_folder()
    if not folder.is_dir() or folder.is_symlink():
        return 0, 0
    removed = freed = 0
    index = folder / "index"
    patterns = [(folder, "*.bin"), (folder, ".import-*.tmp")]
    if index.is_dir() and not index.is_symlink():
        patterns.append((index, "*.json"))
    for parent, pattern in patterns:
        for path in parent.glob(pattern):
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
                continue  # a folder or a special file under a cache name is not the cache's to remove
            if path.suffix == ".tmp" and time.time() - info.st_mtime < 24 * 3600:
                continue  # an import may be writing it now
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a link is removed as a link; a mapped file stays readable by whoever maps it
            if path.suffix == ".bin" and stat.S_ISREG(info.st_mode):
                removed, freed = removed + 1, freed + info.st_size
    return removed, freed
