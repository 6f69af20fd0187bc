"""Untrusted inputs fail fast, as one line, and leave the user's files alone.

Every case checks the exit code, that stderr is exactly one line starting `cnnlab: `
with no traceback, and (where a file of the user's is involved) that it is byte for
byte what it was.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cnnlab.cli.main import main

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sums(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, to show nothing was changed, added or removed."""
    return {str(p.relative_to(folder)): sha(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def one_line(err: str) -> str:
    """The single line of `err`, after asserting that it is one line in cnnlab's form."""
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("cnnlab: "), err
    return lines[0]


def run_cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def call(capsys, argv: list[str]) -> tuple[int, str]:
    """main(argv) in this process: (exit code, the one stderr line)."""
    code = main(argv)
    return code, one_line(capsys.readouterr().err)


# ---- 1. dataset archives ------------------------------------------------------------------------

def write_bomb(folder: Path, content_bytes: int = 1 << 30) -> None:
    """Gzip bombs under MNIST's file names: `content_bytes` of zeros in about a thousandth of that on disk.

    Concatenated gzip members (a valid gzip file) make it in milliseconds instead of compressing 1 GB.
    """
    member = gzip.compress(bytes(16 << 20), mtime=0)
    folder.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        (folder / f"{name}.gz").write_bytes(member * (content_bytes // (16 << 20)))


def test_gzip_bomb_fails_fast_with_little_memory(tmp_path):
    data = tmp_path / "data"
    write_bomb(data / "mnist")
    before = sums(data)
    # maxrss is measured in the child, before and after the command, so torch's own footprint does not count.
    script = textwrap.dedent(f"""
        import resource, sys, time
        import torch, cnnlab.cli.main, cnnlab.training
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        code = cnnlab.cli.main.main(["train", "convnet", "--dataset", "mnist", "--data-dir", {str(data)!r},
                                     "--epochs", "1", "--out", {str(tmp_path / "run")!r}])
        seconds = time.perf_counter() - start
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(code, seconds, grown_mb)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    line = one_line(done.stderr)
    code, seconds, grown_mb = done.stdout.split()
    assert int(code) == 2
    assert "train-images-idx3-ubyte.gz: expands past 47,040,016 bytes: not the dataset file mnist" in line
    assert line.endswith("; delete it")
    # The 1 GB content stops at the expected 47 MB: well under a second of work, a fraction of 1 GB of memory.
    assert float(seconds) < 10 and float(grown_mb) < 300, (seconds, grown_mb)
    assert sums(data) == before


def test_gzip_bomb_through_python_m_cnnlab(tmp_path):
    data = tmp_path / "data"
    write_bomb(data / "mnist", 128 << 20)
    before = sums(data)
    done = run_cli("train", "convnet", "--dataset", "mnist", "--data-dir", str(data), "--epochs", "1",
                   "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert "expands past 47,040,016 bytes" in one_line(done.stderr)
    assert sums(data) == before


def test_oversized_raw_file_is_refused(tmp_path, fake_idx):
    fake = fake_idx()
    folder = fake.write(tmp_path, compress=False)
    path = folder / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + bytes(10_000))
    before = sums(tmp_path)
    from cnnlab.data import load_dataset
    from cnnlab.errors import DataError
    with pytest.raises(DataError, match=rf"{path}: is larger than 38 bytes: not the dataset file mnist"):
        load_dataset("mnist", tmp_path)
    assert sums(tmp_path) == before


def test_bounded_reader_handles_multi_member_and_padding(tmp_path):
    from cnnlab.data.idx import read_bounded

    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"abc") + gzip.compress(b"def") + bytes(16))
    h = hashlib.sha256()
    assert read_bounded(path, 6, "x", content_hashes=[h]) == b"abcdef"
    assert h.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


@pytest.mark.skipif(ROOT, reason="root reads files whatever their permissions")
def test_unreadable_dataset_file_is_environment(tmp_path, fake_idx):
    fake = fake_idx()
    folder = fake.write(tmp_path)
    path = folder / "train-images-idx3-ubyte.gz"
    path.chmod(0)
    try:
        done = run_cli("train", "convnet", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1",
                       "--out", str(tmp_path / "run"))
    finally:
        path.chmod(0o644)
    assert done.returncode == 1
    assert one_line(done.stderr) == f"cnnlab: error: permission denied: {path}"


def test_unreadable_dataset_file_is_environment_simulated(tmp_path, fake_idx, monkeypatch, capsys):
    """As root permissions are not enforced: make the read itself fail as it would for another user."""
    import cnnlab.data.load as load

    fake = fake_idx()
    folder = fake.write(tmp_path)
    path = folder / "train-images-idx3-ubyte.gz"

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(load, "read_bounded", denied)
    code, line = call(capsys, ["datasets", "--data-dir", str(tmp_path)])
    assert code == 1
    assert line == f"cnnlab: error: permission denied: {path}"
