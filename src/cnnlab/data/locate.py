"""Where a dataset's files are: the search roots, the layouts inside each, and downloading.

Roots, in order: the `data_dir` argument, `$CNNLAB_DATA`, the user cache
(`${XDG_CACHE_HOME:-~/.cache}/cnnlab`), then system dirs (`<XDG_DATA_DIRS>/datasets`,
i.e. `/usr/local/share/datasets` and `/usr/share/datasets`, where Debian's
`dataset-*` packages install). Inside a root each spec names the sub-folders to
try (`mnist/`, torchvision's `MNIST/raw/`, the root itself). This module only
looks; `load.py` verifies what it finds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.data.catalog import DatasetSpec
from cnnlab.errors import DataError


@dataclass(frozen=True)
class Candidate:
    """A folder holding every file of a dataset (each raw or gzipped), not yet verified."""

    folder: Path
    origin: str  # which root it came from: "--data-dir", "$CNNLAB_DATA", "cache", "system"
    paths: tuple[Path, ...]  # one per `spec.files`, same order


@dataclass
class Scan:
    candidates: list[Candidate] = field(default_factory=list)  # complete folders, search order
    looked: list[tuple[str, Path, str]] = field(default_factory=list)  # (origin, folder, note) for every folder tried

    def note(self, folder: Path, note: str) -> None:
        """Record what was wrong with a folder that held files (e.g. another dataset's)."""
        self.looked = [(o, f, note if f == folder else n) for o, f, n in self.looked]

    def describe(self) -> str:
        """Every folder tried, grouped by root: '--data-dir: /d/mnist, /d (incomplete: ...); cache: ...'."""
        groups: dict[str, list[str]] = {}
        for origin, folder, note in self.looked:
            groups.setdefault(origin, []).append(f"{folder} ({note})" if note else str(folder))
        return "; ".join(f"{origin}: {', '.join(folders)}" for origin, folders in groups.items())


def offline() -> bool:
    """True when `$CNNLAB_OFFLINE` is set (to anything but '' or '0'): never download."""
    return os.environ.get("CNNLAB_OFFLINE", "") not in ("", "0")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnlab"


def system_dirs() -> list[Path]:
    data_dirs = os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    return [Path(d) / "datasets" for d in data_dirs.split(os.pathsep) if d]


def search_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """(origin, root) pairs in search order. A `data_dir` that does not exist is an error."""
    roots = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(
                f"--data-dir {str(data_dir)!r} is not a folder; pass the folder that holds the dataset files"
            )
        roots.append(("--data-dir", root))
    if os.environ.get("CNNLAB_DATA"):
        roots.append(("$CNNLAB_DATA", Path(os.environ["CNNLAB_DATA"]).expanduser()))
    roots.append(("cache", cache_dir()))
    roots.extend(("system", root) for root in system_dirs())
    return roots


def _stored_path(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        path = folder / name
        if path.is_file():
            return path
    return None


def scan(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> Scan:
    """Every folder where `spec`'s files could be, in search order, and which of them hold all files."""
    result = Scan()
    for origin, root in search_roots(data_dir):
        for sub in spec.subdirs:
            folder = root / sub if sub else root
            paths = [_stored_path(folder, r.stored_names()) for r in spec.files] if folder.is_dir() else []
            missing = [r.filename for r, p in zip(spec.files, paths) if p is None]
            if paths and not missing:
                result.candidates.append(Candidate(folder, origin, tuple(p for p in paths if p is not None)))
            # A partial set is reported, not used: the rest may be in a later root.
            note = f"incomplete, lacks {' '.join(missing)}" if paths and 0 < len(missing) < len(paths) else ""
            result.looked.append((origin, folder, note))
    return result


def download(spec: DatasetSpec) -> Path:
    """Download `spec` with torchvision into the user cache and return the cache root.

    torchvision downloads into a private temporary folder first; its files are then
    moved into the cache without replacing any file already there, so a file a
    user put in the cache is never overwritten.
    """
    if spec.torchvision_class is None:
        raise DataError(f"dataset {spec.name!r} cannot be downloaded")
    import torchvision.datasets  # imported here: it is slow and only needed to download

    dataset_class = getattr(torchvision.datasets, spec.torchvision_class)
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".download-{spec.name}-", dir=root) as tmp:
        try:
            dataset_class(root=tmp, train=True, download=True)
            dataset_class(root=tmp, train=False, download=True)
        except Exception as err:  # network errors come in many types; all mean "not downloaded"
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise DataError(
                f"downloading {spec.name} with torchvision.datasets.{spec.torchvision_class} failed: {first_line}"
            ) from None
        for sub in spec.subdirs:
            source = Path(tmp) / sub
            if sub and source.is_dir():
                _move_new_files(source, root / sub)
    return root


def _move_new_files(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and not (target / path.name).exists():
            shutil.move(str(path), target / path.name)
