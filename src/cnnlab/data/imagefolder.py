"""Find the images of a folder laid out as torchvision's ImageFolder or Keras' image_dataset_from_directory.

`PATH/<class>/**/*.png|jpg|...` (one folder per class, sorted by name: labels 0..K-1), or the same under
`PATH/train/` with a test split in `PATH/test/` (or `val/`, `valid/`, `validation/`). Only the layout is read
here (names, sizes, mtimes), never an image: `decode.py` reads them. The walk never follows a symbolic link
that leads outside PATH, never opens anything (a FIFO or device is only looked at with lstat) and is bounded
in classes, files and depth, so a hostile or mistaken folder (a home directory, a loop of links) fails with one
line instead of running for hours.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TEST_FOLDERS = ("test", "val", "valid", "validation")  # preferred first when several exist
MAX_CLASSES = 10_000
MAX_FILES = 5_000_000  # every entry looked at, images or not
MAX_DEPTH = 32
_JUNK = {"thumbs.db", "desktop.ini", "__macosx"}  # what file managers leave behind (hidden names are skipped too)


@dataclass(frozen=True, slots=True)  # slots: one of these per image, millions of them at most
class ImageFile:
    rel: str  # relative to the folder, with "/" (what reports and the content hash name)
    path: str  # where to open it: no symbolic link in it, so it can be opened with O_NOFOLLOW
    size: int
    mtime_ns: int
    label: int
    test: bool  # in the test folder


@dataclass
class Layout:
    root: Path
    classes: tuple[str, ...]
    files: list[ImageFile]  # train files, then test files; each part sorted by class, then path
    test_folder: str | None  # "test", "val", ... when the folder has its own test split
    train_folder: str | None = None  # "train" when the classes are under PATH/train/
    ignored: int = 0  # files that are not images (hidden and system files included)
    ignored_examples: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # links leading outside, FIFOs, devices: "rel (why)"
    notes: list[str] = field(default_factory=list)

    def manifest(self) -> Iterator[tuple[str, int, int]]:
        """(relative path, size, mtime_ns) of every image: what says "unchanged" without reading a byte."""
        return ((f.rel, f.size, f.mtime_ns) for f in self.files)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK


class _Walker:
    """One walk of a folder: counts what it sees, against the bounds."""

    def __init__(self, root: Path):
        self.root = root
        self.real_root = os.path.realpath(root)
        self.seen = 0
        self.visited: set[tuple[int, int]] = set()
        self.layout = Layout(root, (), [], None)

    def _count(self) -> None:
        self.seen += 1
        if self.seen > MAX_FILES:
            raise DataError(f"{self.root} holds more than {MAX_FILES:,} files; cnnlab imports at most that many")

    def _ignore(self, rel: str) -> None:
        self.layout.ignored += 1
        if len(self.layout.ignored_examples) < 5:
            self.layout.ignored_examples.append(rel)

    def _refuse(self, rel: str, why: str) -> None:
        self.layout.refused.append(f"{rel} ({why})")

    def _inside(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def entries(self, folder: str, rel: str, quiet: bool = False) -> list[tuple[str, str, str, os.stat_result]]:
        """(path, rel, kind, stat) for each visible entry of `folder`, sorted by name; `quiet`: a first look
        that neither counts nor notes anything.

        kind is "dir" or "file" (a regular file); hidden, refused and unreadable entries are left out. A link is
        replaced by what it leads to when that lies inside the root, so its path is then the real one.
        """
        try:
            with os.scandir(folder) as it:
                found = sorted(it, key=lambda e: e.name)
        except OSError as err:
            raise DataError(f"{folder}: cannot list the folder ({err.strerror})") from None
        ignore = (lambda rel: None) if quiet else self._ignore
        refuse = (lambda rel, why: None) if quiet else self._refuse
        out: list[tuple[str, str, str, os.stat_result]] = []
        for entry in found:
            if not quiet:
                self._count()
            sub = f"{rel}/{entry.name}" if rel else entry.name
            if _hidden(entry.name):
                ignore(sub)
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                refuse(sub, "cannot be read")
                continue
            path = entry.path
            if stat.S_ISLNK(info.st_mode):
                real = os.path.realpath(path)
                if not self._inside(real):
                    refuse(sub, "a symbolic link leading outside the folder")
                    continue
                try:
                    info = os.stat(real)
                except OSError:
                    refuse(sub, "a broken symbolic link")
                    continue
                path = real
            if stat.S_ISDIR(info.st_mode):
                out.append((path, sub, "dir", info))
            elif stat.S_ISREG(info.st_mode):
                out.append((path, sub, "file", info))
            else:
                refuse(sub, "not a regular file")  # a FIFO or device: looked at with lstat, never opened
        return out

    def enter(self, info: os.stat_result, rel: str) -> bool:
        """False for a folder seen before (a link back up would loop forever)."""
        key = (info.st_dev, info.st_ino)
        if key in self.visited:
            self._refuse(rel, "a folder already seen through another link")
            return False
        self.visited.add(key)
        return True

    def images(self, folder: str, rel: str, label: int, test: bool, info: os.stat_result) -> list[ImageFile]:
        """Every image under a class folder, at any depth (like ImageFolder), sorted by relative path."""
        found: list[ImageFile] = []
        stack = [(folder, rel, 0, info)]
        while stack:
            path, sub, depth, dir_info = stack.pop()
            if depth > MAX_DEPTH:
                raise DataError(f"{self.root / sub}: folders nested more than {MAX_DEPTH} deep")
            if not self.enter(dir_info, sub):
                continue
            for child, child_rel, kind, child_info in self.entries(path, sub):
                if kind == "dir":
                    stack.append((child, child_rel, depth + 1, child_info))
                elif is_image_name(child_rel):
                    found.append(ImageFile(child_rel, child, child_info.st_size, child_info.st_mtime_ns, label, test))
                else:
                    self._ignore(child_rel)
        found.sort(key=lambda f: f.rel)
        return found


def _class_folders(walker: _Walker, folder: str, rel: str) -> tuple[dict[str, tuple[str, os.stat_result]], int]:
    """Class name -> (folder, stat) under `folder`, and how many images lie directly in it (outside any class)."""
    classes: dict[str, tuple[str, os.stat_result]] = {}
    loose = 0
    for path, sub, kind, info in walker.entries(folder, rel):
        if kind == "dir":
            classes[sub.rsplit("/", 1)[-1]] = (path, info)
        else:
            loose += is_image_name(sub)
            walker._ignore(sub)
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{walker.root / rel}: {len(classes):,} class folders; cnnlab imports at most {MAX_CLASSES:,}")
    return classes, loose


def _split_folders(walker: _Walker) -> tuple[str, str | None] | None:
    """(train folder, test folder or None) when the root is split into train/ (+ test/ or val/...), else None.

    A class that happens to be called "train" holds images, not class folders: then the root is a class root.
    """
    names = {sub.lower(): sub for _, sub, kind, _ in walker.entries(walker.real_root, "", quiet=True) if kind == "dir"}
    train = names.get("train")
    if train is None:
        return None
    inside = walker.entries(os.path.join(walker.real_root, train), train, quiet=True)
    if not any(kind == "dir" for _, _, kind, _ in inside) or any(
        kind == "file" and is_image_name(sub) for _, sub, kind, _ in inside
    ):
        return None
    return train, next((names[n] for n in TEST_FOLDERS if n in names), None)


def scan(root: str | os.PathLike) -> Layout:
    """The layout of an image folder: its classes and images (not yet read). A one-line `DataError` for a
    folder with no images, a class folder without any, a single class, or test classes unknown to train."""
    root = Path(root)
    walker = _Walker(root)
    try:
        walker.enter(os.stat(walker.real_root), "")
    except OSError as err:
        raise DataError(f"{root}: cannot read the folder ({err.strerror})") from None
    layout = walker.layout
    split = _split_folders(walker)
    test_folders: dict[str, tuple[str, os.stat_result]] = {}
    train = test = ""
    if split is None:
        folders, loose = _class_folders(walker, walker.real_root, "")
        where = str(root)
    else:
        train, test_name = split
        test = test_name or ""
        layout.train_folder = train
        for _, sub, kind, _ in walker.entries(walker.real_root, ""):
            if kind == "file":
                walker._ignore(sub)
            elif sub not in (train, test):
                why = f"{test}/ is the test split" if sub.lower() in TEST_FOLDERS else f"the classes are in {train}/"
                layout.notes.append(f"{sub}/ not used ({why})")
        folders, loose = _class_folders(walker, os.path.join(walker.real_root, train), train)
        where = str(root / train)
        if test:
            test_folders, test_loose = _class_folders(walker, os.path.join(walker.real_root, test), test)
            loose += test_loose
            if not test_folders:
                raise DataError(f"no class folders in the test split {root / test}: " + _expected(root / test))
            unknown = sorted(set(test_folders) - set(folders))
            if unknown:
                raise DataError(
                    f"{root / test}: class folder(s) {', '.join(unknown[:5])} are not in {root / train}; "
                    "the test classes must be among the train classes"
                )
            layout.test_folder = test
    if loose:
        layout.notes.append(f"{loose} image(s) outside any class folder ignored")
    if not folders:
        what = (
            f"no class folders in {where} ({loose} image(s) lie directly in it)" if loose else f"no images in {where}"
        )
        raise DataError(f"{what}: " + _expected(where) + _refused_note(layout))
    classes = tuple(sorted(folders))
    label = {name: i for i, name in enumerate(classes)}
    for parts, part, is_test in ((folders, train, False), (test_folders, test, True)):
        for name in sorted(parts):
            path, info = parts[name]
            rel = f"{part}/{name}" if part else name
            found = walker.images(path, rel, label[name], is_test, info)
            if not found:
                raise DataError(
                    f"class folder {root / rel} has no images (expected {root / rel}/*.png, .jpg, ...); "
                    "add images or remove the folder" + _refused_note(layout)
                )
            layout.files.extend(found)
    if len(classes) < 2:
        raise DataError(f"{where}: needs at least 2 classes, found only {classes[0]!r}; " + _expected(where))
    layout.classes = classes
    return layout


def _expected(where: str | Path) -> str:
    return f"expected {where}/<class>/*.png (or .jpg, .jpeg, .bmp, .gif, .webp, .tif), one folder per class"


def _refused_note(layout: Layout) -> str:
    if not layout.refused:
        return ""
    return f" ({len(layout.refused)} entr{'y' if len(layout.refused) == 1 else 'ies'} refused: {layout.refused[0]})"
