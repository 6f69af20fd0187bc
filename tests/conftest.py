"""Shared test fixtures: an offline, isolated data environment and small fake IDX datasets."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import catalog, load
from cnnlab.data.idx import encode_idx


@pytest.fixture(autouse=True)
def offline_isolated_data(tmp_path_factory):
    """Every test runs offline, with an empty user cache and no system dataset dirs.

    Uses its own MonkeyPatch so a test calling `monkeypatch.undo()` cannot turn
    the network back on, and its own folder so tests that list `tmp_path` see
    only their files.
    """
    env = tmp_path_factory.mktemp("env")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_OFFLINE", "1")
        mp.setenv("XDG_CACHE_HOME", str(env / "cache"))
        mp.setenv("HOME", str(env / "home"))
        mp.setenv("XDG_DATA_DIRS", str(env / "share"))
        mp.setenv("CNNLAB_CONFIG", str(env / "config"))  # `cnnlab datasets add` never writes the user's own
        mp.delenv("CNNLAB_DATA", raising=False)
        load._VERIFIED.clear()
        yield env
        load._VERIFIED.clear()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass
class FakeIdx:
    """A tiny MNIST-format dataset: random 28x28 uint8 images and labels 0..9."""

    name: str
    train_images: np.ndarray  # (N, 28, 28) uint8
    train_labels: np.ndarray  # (N,) uint8
    test_images: np.ndarray
    test_labels: np.ndarray
    monkeypatch: pytest.MonkeyPatch

    def contents(self) -> dict[str, bytes]:
        """Uncompressed IDX bytes per file name, in the catalog's file order."""
        spec = catalog.DATASETS[self.name]
        arrays = (self.train_images, self.train_labels, self.test_images, self.test_labels)
        return {resource.filename: encode_idx(a) for resource, a in zip(spec.files, arrays)}

    def write(self, root: Path, layout: str = "named", compress: bool = True) -> Path:
        """Write the 4 files under `root`: layout "named" (root/<name>/), "flat" (root/) or
        "torchvision" (root/<Class>/raw/); gzipped or not. Returns the folder."""
        spec = catalog.DATASETS[self.name]
        sub = {"named": spec.name, "flat": "", "torchvision": f"{spec.torchvision_class}/raw"}[layout]
        folder = Path(root) / sub
        folder.mkdir(parents=True, exist_ok=True)
        for filename, data in self.contents().items():
            if compress:
                (folder / f"{filename}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (folder / filename).write_bytes(data)
        return folder

    def register(self, gz_only: bool = False) -> catalog.DatasetSpec:
        """Make the catalog expect these files (for this test only).

        By default the content sums are registered (so gzipped and raw copies
        both verify); `gz_only` registers just the md5 of the gzipped files, as
        the catalog does for KMNIST.
        """
        spec = catalog.DATASETS[self.name]
        files = []
        for resource, data in zip(spec.files, self.contents().values()):
            if gz_only:
                gz_md5 = (hashlib.md5(gzip.compress(data, mtime=0)).hexdigest(),)
                files.append(dataclasses.replace(resource, sha256=None, gz_sha256=(), gz_md5=gz_md5, size=len(data)))
            else:
                files.append(
                    dataclasses.replace(resource, sha256=sha256(data), gz_sha256=(), gz_md5=(), size=len(data))
                )
        spec = dataclasses.replace(
            spec, files=tuple(files), train_size=len(self.train_labels), test_size=len(self.test_labels)
        )
        self.monkeypatch.setitem(catalog.DATASETS, self.name, spec)
        return spec


@pytest.fixture
def fake_idx(monkeypatch) -> Callable[..., FakeIdx]:
    """Factory: `fake_idx(name="mnist", n_train=30, n_test=10, seed=0, register=True)` -> FakeIdx."""

    def make(name: str = "mnist", n_train: int = 30, n_test: int = 10, seed: int = 0, register: bool = True) -> FakeIdx:
        rng = np.random.default_rng(seed)
        fake = FakeIdx(
            name=name,
            train_images=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            train_labels=(np.arange(n_train) % 10).astype(np.uint8),
            test_images=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            test_labels=rng.integers(0, 10, n_test, dtype=np.uint8),
            monkeypatch=monkeypatch,
        )
        if register:
            fake.register()
        return fake

    return make


def interrupt_at(monkeypatch: pytest.MonkeyPatch, epoch_to_stop: int, step_to_stop: int) -> None:
    """Send this process SIGINT during the given training step (what Ctrl-C does to a run)."""
    import os
    import signal

    from cnnlab.data.batches import Batches

    original = Batches.iterate

    def iterate(self, epoch=0, start_step=0):
        for step, x, y in original(self, epoch, start_step):
            if self.shuffle and epoch == epoch_to_stop and step == step_to_stop:
                os.kill(os.getpid(), signal.SIGINT)
            yield step, x, y

    monkeypatch.setattr(Batches, "iterate", iterate)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A 1-epoch convnet run on the embedded sample, once per test module (test_train.py has its own)."""
    from cnnlab.training import train

    out = tmp_path_factory.mktemp("trained") / "run"
    return train(
        model="convnet",
        dataset="mnist-sample",
        epochs=1,
        progress=False,
        batch_size=64,
        limit_train=256,
        limit_test=50,
        out=str(out),
    ).run_dir


# ---- the browser tests (Playwright driving Debian's chromium; never a downloaded browser) -------------------------


def _missing(what: str):
    """Skip without it, except under CI=true, where a missing browser is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"needs {what}")


@pytest.fixture(scope="module")
def chromium_path():
    path = shutil.which("chromium") or shutil.which("chromium-browser")  # Debian's package, as test_report finds it
    if path is None:
        _missing("Debian's chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright (pip install playwright)")
    return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """`shots(page, name)` saves a screenshot to a temporary folder, and to $CNNLAB_SCREENSHOT_DIR when set."""
    folders = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("CNNLAB_SCREENSHOT_DIR"):
        folders.append(Path(os.environ["CNNLAB_SCREENSHOT_DIR"]))

    def save(page, name: str, full_page: bool = True):
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)

    return save


@contextlib.contextmanager
def _serving(app) -> Iterator[str]:
    """`app` under uvicorn in a thread on a free loopback port; yields its base URL, stops it after."""
    import uvicorn

    from cnnlab.web.server import _listen

    sock = _listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the lab did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def serving():
    """`with serving(app) as url:` the web lab's app served for real (uvicorn, loopback), as a browser needs it."""
    pytest.importorskip("fastapi")
    return _serving


@pytest.fixture(scope="module")
def browser(chromium_path):
    """Debian's chromium under Playwright, one per test module; tests open their own contexts and pages."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium_path, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread beats several, and by far on a busy machine (a module opts in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
