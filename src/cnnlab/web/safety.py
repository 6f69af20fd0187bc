"""Which files the lab may serve: regular files inside one of the roots, after resolving symlinks.

`..`, absolute paths, NUL bytes and anything whose real path leaves the root (a symlink out) are
refused the same way as a missing file, so a probe learns nothing about what exists outside. So are
dotfiles and anything under a dot-folder (`.env`, `.git/config`, a run's `.lock`), named or reached
through a link: they are a project's secrets and plumbing, never something a run page links to.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from cnnlab.files import UnsafeFileError, open_regular

# A plain decimal in ASCII: "²".isdigit() is true and int("²") raises; int("٣") is 3 and int("00") is 0.
ROOT_INDEX = re.compile(r"0|[1-9][0-9]{0,3}")


def root_of(roots: list[Path], index: str) -> Path | None:
    """The root that /files/<index>/ names, or None for anything that is not a plain small index."""
    if not ROOT_INDEX.fullmatch(index) or int(index) >= len(roots):
        return None
    return roots[int(index)]


def _hidden(parts) -> bool:
    return any(part.startswith(".") for part in parts)


def safe_file(root: Path, relative: str) -> Path | None:
    """The real path of `relative` inside `root` when it is a regular file there, else None."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    path = PurePosixPath(relative)
    if path.is_absolute() or _hidden(path.parts):  # also catches "..", and "." which no client sends
        return None
    try:
        real_root = root.resolve(strict=True)
        target = (real_root / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not target.is_relative_to(real_root) or _hidden(target.relative_to(real_root).parts):
        return None  # out of the root, or a link to a dotfile in it
    if not target.is_file():
        return None
    return target


def open_served(root: Path, target: Path) -> int | None:
    """A descriptor of `target` (from `safe_file`) opened without following a link or blocking, and checked
    again from its fstat: the entry could have been swapped for a FIFO or a link since `safe_file` looked."""
    try:
        return open_regular(target, within=root, limit=None)
    except (OSError, UnsafeFileError):
        return None
