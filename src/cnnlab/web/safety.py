"""Which files the lab may serve: regular files inside one of the roots, after resolving symlinks.

`..`, absolute paths, NUL bytes and anything whose real path leaves the root (a symlink out) are
refused the same way as a missing file, so a probe learns nothing about what exists outside.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath


def safe_file(root: Path, relative: str) -> Path | None:
    """The real path of `relative` inside `root` when it is a regular file there, else None."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    parts = PurePosixPath(relative).parts
    if PurePosixPath(relative).is_absolute() or any(p in ("..", ".") for p in parts):
        return None
    try:
        real_root = root.resolve(strict=True)
        target = (real_root / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not target.is_relative_to(real_root) or not target.is_file():
        return None
    return target
