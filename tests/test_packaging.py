"""Packaging: one version, the declared licence shipped, type information marked."""

from importlib import metadata
from pathlib import Path

import cnnlab

ROOT = Path(__file__).resolve().parent.parent


def test_one_version():
    assert metadata.version("cnnlab") == cnnlab.__version__


def test_licence_file_and_py_typed():
    assert metadata.metadata("cnnlab")["License"] == "MIT"
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert (Path(cnnlab.__file__).parent / "py.typed").is_file()


def test_torch_range_admits_this_torch_and_later_2x():
    import torch

    requires = [r for r in metadata.requires("cnnlab") if r.startswith("torch") and "vision" not in r]
    assert requires and ">=2.5" in requires[0] and "<3" in requires[0], requires
    assert tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


def test_from_cnnlab_import_train_whatever_was_imported_first():
    import cnnlab.training.loop  # noqa: F401 - importing the subpackage used to rebind cnnlab.train
    from cnnlab import train

    assert callable(train) and train.__module__ == "cnnlab.training.loop"
