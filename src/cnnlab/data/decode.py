"""Read and decode many small image files on every core: a probe pass (hash and header) and a decode pass.

`probe` reads each image once: its sha256 (what the cache is keyed by) and its header (size, grayscale or
colour, alpha), so the size S and the channels can be chosen before anything is decoded. `decode_into` then
decodes each image, converted to S x S and 1 or 3 channels, straight into its row of the final uint8 array
(a shared mapping: the cache file being written, or anonymous shared memory), so the import needs the
decoded size and little more. A source is a file path or the bytes of an encoded image (a Hugging Face
dataset's column).

Both passes run on a pool of forked worker processes (they use PIL, numpy and hashlib, never torch); for
28x28 PNGs that is about twice as fast as threads on 2 cores, since most of the time is spent in Python
around PIL, under the GIL. Where fork is missing (Windows, macOS' default) or the caller is itself a
daemon process, threads are used instead. Files are opened as `files.open_regular` does (no link, no FIFO or
device, at most 64 MiB), only the formats below are opened (never EPS, which would run Ghostscript), and an
image's width x height is checked against 50 megapixels from its header before any pixel is decoded.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import multiprocessing
import os
import stat
import struct
import sys
import threading
import warnings
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

Source = Path | str | bytes
T = TypeVar("T")

MAX_FILE_BYTES = 64 << 20
MAX_PIXELS = 50_000_000
FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "WEBP", "TIFF")  # JPEG opens MPO (cameras) too
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
POOL = "process"  # "process" (forked workers) or "thread": what `workers()` runs the passes on
CHANGED = "changed while importing"  # a reason that is never skipped: the content hash would be wrong
_PNG = b"\x89PNG\r\n\x1a\n"
_GRAY, _ALPHA = 1, 2  # flag bits of a probed image

# The work and its job (sources, output array) of the forked pool: set before the pool forks, so the workers
# inherit them (the sources are never pickled, the output is shared memory), cleared after.
_FORKED: tuple[Callable[[dict[str, Any], tuple[int, int]], Any], dict[str, Any]] | None = None


class BadImage(Exception):
    """An image that cannot be used; the message says why ("cannot decode (truncated)")."""


@dataclass
class Probes:
    """What the probe pass found, one row per source."""

    digests: list[bytes]  # sha256 of each source's bytes (b"" when it could not be read)
    width: np.ndarray  # int64
    height: np.ndarray
    gray: np.ndarray  # bool: single channel (or a gray palette)
    alpha: np.ndarray  # bool: has transparency
    bad: dict[int, str] = field(default_factory=dict)  # index -> why it cannot be used


def workers() -> int:
    """How many processes (or threads) decode: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_source(source: Source, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of one image, from memory or from a regular file of at most `limit` bytes.

    The checks of `files.open_regular` (no link as the last component, a regular file only, so a FIFO
    never blocks, and the size bound), written out here: this runs once an image per pass, and its
    pathlib and exception plumbing alone cost as much as the read. One read of the file's size: a
    regular file returns less only at its end.
    """
    if isinstance(source, bytes):
        if len(source) > limit:
            raise BadImage(f"{len(source):,} bytes, over the limit of {limit >> 20} MiB")
        return source
    try:
        fd = os.open(source, _OPEN_FLAGS)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise BadImage("a symbolic link (not followed)") from None
        raise BadImage(f"cannot be read ({err.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadImage("not a regular file")
        if info.st_size > limit:
            raise BadImage(f"{info.st_size:,} bytes, over the limit of {limit >> 20} MiB")
        data = os.read(fd, info.st_size + 1)
        while len(data) > info.st_size:  # it grew since fstat: read on, up to the bound
            if len(data) > limit:
                raise BadImage(f"over the limit of {limit >> 20} MiB")
            more = os.read(fd, limit + 1 - len(data))
            if not more:
                break
            data += more
    except OSError as err:
        raise BadImage(f"cannot be read ({err.strerror})") from None
    finally:
        os.close(fd)
    return data


def _png_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, flags) from a PNG's IHDR (and tRNS) chunks, or None to ask PIL (palettes, odd files).

    PIL's open costs about 15 us an image; this costs about 1, a quarter of the probe pass for MNIST.
    """
    if len(data) < 33 or data[:8] != _PNG or data[12:16] != b"IHDR":
        return None
    width, height, _depth, colour = struct.unpack(">IIBB", data[16:26])
    if colour not in (0, 2, 4, 6):
        return None  # 3: a palette, gray or not; anything else is not a valid PNG: let PIL say so
    flags = (_GRAY if colour in (0, 4) else 0) | (_ALPHA if colour in (4, 6) else 0)
    if not flags & _ALPHA:  # a tRNS chunk before the image data makes one colour transparent
        at = 33
        while at + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[at : at + 8])
            if kind == b"IDAT":
                break
            if kind == b"tRNS":
                flags |= _ALPHA
                break
            at += 12 + length
    return width, height, flags


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.UnidentifiedImageError:
        raise BadImage("cannot decode (not a PNG, JPEG, BMP, GIF, WebP or TIFF image)") from None
    except (OSError, ValueError, SyntaxError, struct.error, zlib.error, EOFError) as err:
        raise BadImage(f"cannot decode ({_why(err)})") from None


def _why(err: BaseException) -> str:
    text = str(err)
    return "truncated" if "truncated" in text else (text.splitlines()[0][:100] if text else type(err).__name__)


def _header(data: bytes) -> tuple[int, int, int]:
    found = _png_header(data)
    if found is not None:
        return found
    im = _open(data)
    mode = im.mode
    gray = mode in GRAY_MODES
    if mode in ("P", "PA"):
        palette = im.getpalette() or []
        gray = all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))
    alpha = mode in ALPHA_MODES or "transparency" in im.info
    return im.size[0], im.size[1], (_GRAY if gray else 0) | (_ALPHA if alpha else 0)


def _probe_chunk(
    job: dict[str, Any], span: tuple[int, int]
) -> tuple[int, list[bytes], np.ndarray, list[tuple[int, str]]]:
    start, stop = span
    sources: Sequence[Source] = job["sources"]
    digests: list[bytes] = []
    info = np.zeros((stop - start, 3), np.int64)
    bad: list[tuple[int, str]] = []
    for row, i in enumerate(range(start, stop)):
        try:
            data = read_source(sources[i])
        except BadImage as err:
            digests.append(b"")
            bad.append((i, str(err)))
            continue
        digests.append(hashlib.sha256(data).digest())
        try:
            width, height, flags = _header(data)
            if width * height > MAX_PIXELS:
                raise BadImage(f"too large ({width}x{height} pixels, over {MAX_PIXELS // 1_000_000} megapixels)")
            if width < 1 or height < 1:
                raise BadImage("cannot decode (no pixels)")
        except BadImage as err:
            bad.append((i, str(err)))
            continue
        info[row] = width, height, flags
    return start, digests, info, bad


def probe(sources: Sequence[Source], progress: bool = False) -> Probes:
    """Hash and read the header of every source; unusable ones are listed in `bad`, never raised."""
    n = len(sources)
    digests: list[bytes] = [b""] * n
    info = np.zeros((n, 3), np.int64)
    bad: dict[int, str] = {}
    for start, chunk_digests, chunk_info, chunk_bad in _parallel(
        _probe_chunk, {"sources": sources}, n, progress, "reading"
    ):
        digests[start : start + len(chunk_digests)] = chunk_digests
        info[start : start + len(chunk_info)] = chunk_info
        bad.update(chunk_bad)
    return Probes(digests, info[:, 0], info[:, 1], (info[:, 2] & _GRAY) > 0, (info[:, 2] & _ALPHA) > 0, bad)


def _eight_bit(im: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float gray image as 8 bits: 16-bit keeps its top 8 bits, the others are clipped."""
    array = np.asarray(im)
    if im.mode.startswith("I;16") or (im.mode == "I" and array.max(initial=0) > 255):
        array = np.clip(array, 0, 65535).astype(np.uint32) >> 8
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")


def convert(im: Image.Image, size: int, channels: int) -> np.ndarray:
    """`im` as a (size, size) or (size, size, 3) uint8 array: transparency over black, bilinear with antialias."""
    target = "L" if channels == 1 else "RGB"
    width, height = im.size
    if im.format in ("JPEG", "MPO") and im.mode in ("L", "RGB") and (width > size or height > size):
        im.draft(target, (size, size))  # libjpeg decodes at 1/2, 1/4 or 1/8 scale: far less to decode and resize
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _eight_bit(im)
    if im.mode in ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        over = Image.new(target, rgba.size, 0)
        over.paste(rgba.convert(target), mask=rgba.getchannel("A"))  # composited over black
        im = over
    elif im.mode != target:
        im = im.convert(target)
    if im.size != (size, size):
        # Pillow's bilinear filter widens with the scale, so downscaling is antialiased.
        im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    pixels = np.frombuffer(im.tobytes(), np.uint8)  # a tenth quicker than np.asarray's array interface
    return pixels.reshape(size, size) if channels == 1 else pixels.reshape(size, size, 3)


def decode_one(data: bytes, size: int, channels: int) -> np.ndarray:
    """One encoded image as (size, size) or (size, size, 3) uint8; `BadImage` when it cannot be."""
    im = _open(data)
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise BadImage(f"too large ({width}x{height} pixels, over {MAX_PIXELS // 1_000_000} megapixels)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a TIFF's odd tags, a PNG's bad profile: the pixels are fine
            return convert(im, size, channels)
    except (OSError, ValueError, SyntaxError, struct.error, zlib.error, EOFError, MemoryError) as err:
        raise BadImage(f"cannot decode ({_why(err)})") from None


def _decode_chunk(job: dict[str, Any], span: tuple[int, int]) -> tuple[list[tuple[int, str]], np.ndarray]:
    start, stop = span
    sources: Sequence[Source] = job["sources"]
    out: np.ndarray = job["out"]
    digests: Sequence[bytes] | None = job["digests"]
    size, channels = out.shape[3], out.shape[1]
    bad: list[tuple[int, str]] = []
    for i in range(start, stop):
        try:
            data = read_source(sources[i])
            if digests is not None and hashlib.sha256(data).digest() != digests[i]:
                raise BadImage(CHANGED)
            pixels = decode_one(data, size, channels)
        except BadImage as err:
            bad.append((i, str(err)))
            continue
        if channels == 1:
            out[i, 0] = pixels
        else:
            out[i] = pixels.transpose(2, 0, 1)
    counts = np.zeros((channels, 256), np.int64)
    stop_train = min(stop, job["train_rows"])
    if start < stop_train:
        rows = out[start:stop_train]
        skipped = [i - start for i, _ in bad if i < stop_train]
        if skipped:
            rows = np.delete(rows, skipped, axis=0)
        for c in range(channels):
            counts[c] = np.bincount(rows[:, c].ravel(), minlength=256)
    return bad, counts


def decode_into(
    sources: Sequence[Source],
    out: np.ndarray,
    digests: Sequence[bytes] | None = None,
    train_rows: int = 0,
    progress: bool = False,
) -> tuple[dict[int, str], np.ndarray]:
    """Decode `sources[i]` into `out[i]` ((N, C, S, S) uint8, shared with the workers: a `np.memmap` or an array
    over anonymous shared memory), checking each against `digests` from the probe when given.

    Returns (index -> why, for the images that could not be decoded; their rows are left as they were) and
    the (C, 256) histogram of the pixel values of the good rows below `train_rows` (the mean and std).
    """
    n, channels = len(sources), out.shape[1]
    if out.shape[0] < n or out.dtype != np.uint8 or out.ndim != 4 or out.shape[2] != out.shape[3]:
        raise ValueError(f"decode_into: out must be uint8 (>={n}, C, S, S), got {out.dtype} {out.shape}")
    bad: dict[int, str] = {}
    counts = np.zeros((channels, 256), np.int64)
    job = {"sources": sources, "out": out, "digests": digests, "train_rows": train_rows}
    for chunk_bad, chunk_counts in _parallel(_decode_chunk, job, n, progress, "decoding"):
        bad.update(chunk_bad)
        counts += chunk_counts
    return bad, counts


def _use_processes(count: int) -> bool:
    return (
        POOL == "process"
        and count > 1
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon  # a daemon (a DataLoader worker) may not have children
        and threading.current_thread() is threading.main_thread()
    )


def _forked(span: tuple[int, int]) -> Any:
    assert _FORKED is not None
    work, job = _FORKED
    return work(job, span)


def _parallel(
    work: Callable[[dict[str, Any], tuple[int, int]], T], job: dict[str, Any], n: int, progress: bool, what: str
) -> list[T]:
    """`work(job, span)` over chunks of range(n) on every core, with a progress bar; results in chunk order."""
    global _FORKED
    # here: tqdm is a dependency, but only an import pays for it
    from tqdm import tqdm

    count = min(workers(), max(1, n // 256))  # a few hundred small images decode faster than a pool starts
    step = max(64, min(2048, -(-n // (count * 16))))  # a chunk: enough for the bar to move, few enough round trips
    spans = [(start, min(start + step, n)) for start in range(0, n, step)]
    results: list[T] = []
    bar = tqdm(total=n, desc=what, unit="img", file=sys.stderr, disable=not progress, leave=False, smoothing=0.1)
    try:
        if count <= 1:
            for span in spans:
                results.append(work(job, span))
                bar.update(span[1] - span[0])
        elif _use_processes(count):
            _FORKED = (work, job)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork of a process with threads
                pool = multiprocessing.get_context("fork").Pool(count)
            with pool:
                for span, result in zip(spans, pool.imap(_forked, spans)):
                    results.append(result)
                    bar.update(span[1] - span[0])
        else:
            with ThreadPoolExecutor(count) as threads:
                for span, result in zip(spans, threads.map(functools.partial(work, job), spans)):
                    results.append(result)
                    bar.update(span[1] - span[0])
    finally:
        _FORKED = None
        bar.close()
    return results
