"""A run of your own data or your own model: what it records, and how a run of them is reopened.

Your own dataset (a folder of images, an .npz, a CSV, a Hugging Face dataset, or a name given with
`cnnlab datasets add`) is recorded in `config.data_origin`: its path, content sha256, classes and split,
so a run reopens without the data (predict, export, serve) and `eval` of a run whose data has moved or
changed says so. Your own model (`FILE.py:NAME`, `MODULE:NAME`) is copied into `RUN/model/` with its
sha256 in `config.model_sha256`; reopening executes that copy, so it takes `trust_code`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from cnnlab.data.catalog import DATASETS, DatasetSpec, get_spec
from cnnlab.data.imported import ImportOptions, check_source, is_own_dataset, load_own, spec_from_record
from cnnlab.data.load import Dataset, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.models.custom import is_custom, load_from_copy
from cnnlab.runfolder.config import TrainConfig

MODEL_FOLDER = "model"  # RUN/model/<file>.py: the copy of your own model's source


def is_own_data(config: TrainConfig) -> bool:
    return config.dataset not in DATASETS and is_own_dataset(config.dataset)


def canonical_dataset(name: str) -> str:
    """A path to your own data as an absolute path (a run reopened from another folder still finds it);
    catalog and registered names as they are."""
    if name in DATASETS or not is_own_dataset(name) or not _looks_like_path(name):
        return name
    return str(Path(os.path.expanduser(name)).absolute())


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.startswith((".", "~")) or Path(name).exists()


def display_name(name: str) -> str:
    """A short name for folder names and titles: `~/photos/pets` -> `pets`, `nets/tiny.py:Net` -> `Net`."""
    if is_custom(name):
        name = name.rsplit(":", 1)[1]
    elif _looks_like_path(name) and name not in DATASETS:
        name = Path(name.rstrip("/\\")).stem or "data"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "data"


def import_options(config: TrainConfig) -> ImportOptions:
    return ImportOptions(
        image_size=config.image_size,
        channels=config.channels,
        skip_bad=config.skip_bad_images,
        test_fraction=config.test_fraction,
    )


def dataset_spec(config: TrainConfig) -> DatasetSpec:
    """The spec of the run's dataset: the catalog's, or your own data's as the run recorded it (no file read)."""
    if config.dataset in DATASETS:
        return get_spec(config.dataset)
    if not config.data_origin:
        raise CnnlabError(
            f"the run's dataset {config.dataset!r} is your own data, but its config records no data_origin; "
            "it was not written by `cnnlab train`"
        )
    try:
        return spec_from_record(config.data_origin)
    except (KeyError, TypeError, ValueError) as err:
        raise CnnlabError(f"the run's data_origin is not one cnnlab wrote ({type(err).__name__}: {err})") from None


def spec_of_request(dataset: str, options: dict[str, Any]) -> DatasetSpec:
    """The spec of a requested dataset before any run (a search checking its space): the catalog's, or your
    own data's, imported with the request's import options (decoded once; later runs read the cache)."""
    if dataset in DATASETS:
        return get_spec(dataset)
    keys = ("image_size", "channels", "skip_bad_images", "test_fraction")
    config = TrainConfig(dataset=dataset, **{k: options[k] for k in keys if k in options})
    return load_own(
        canonical_dataset(dataset), import_options(config), progress=bool(options.get("progress", True))
    ).spec


def load_own_data(config: TrainConfig, progress: bool = True) -> Dataset:
    """Your own data for a run: imported (decoded once, then from the cache) for a new run; for a recorded
    run, the data it recorded, or one line saying that the folder has moved or changed."""
    if config.data_origin:
        return check_source(config.data_origin, import_options(config))
    return load_own(config.dataset, import_options(config), progress=progress)


def run_data(config: TrainConfig, data_dir: str | None = None, download: bool = True) -> Dataset:
    """The data a run trained on: a catalog dataset found as `load_dataset` finds it (`data_dir` first), or your
    own as it recorded it, with one line when that folder or file has moved or changed since."""
    if config.dataset in DATASETS:
        return load_dataset(config.dataset, data_dir or config.data_dir, download=download)
    return load_own_data(config, progress=False)


def model_source_name(model: str) -> str:
    """The file name of a custom model's source in RUN/model/: `nets/tiny.py:Net` -> `tiny.py`,
    `pkg.mod:Net` -> `mod.py` (a base name only: a recorded name never places a file elsewhere)."""
    where = model.rsplit(":", 1)[0]
    stem = Path(where).name if where.endswith(".py") else where.rsplit(".", 1)[-1] + ".py"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+\.py", stem) or stem.startswith("."):
        raise CnnlabError(f"model {model!r}: {stem!r} is not a Python file name cnnlab can keep in the run folder")
    return stem


def model_copy(run_dir: Path, model: str) -> Path:
    return run_dir / MODEL_FOLDER / model_source_name(model)


def reopen_model_code(config: TrainConfig, run_dir: Path, trust_code: bool) -> None:
    """Make a run's own model buildable again from RUN/model/ (checked against its sha256, with trust)."""
    if not is_custom(config.model):
        return
    if config.model.startswith("instance:"):
        raise CnnlabError(
            f"the run in {run_dir} trained a model object passed to train(); its code was not saved, so the "
            "run cannot be reopened: train a class or factory (FILE.py:NAME) to get a run that can"
        )
    if not config.model_sha256:
        raise CnnlabError(f"the run in {run_dir} uses your own model {config.model!r} but records no model_sha256")
    load_from_copy(config.model, model_copy(run_dir, config.model), config.model_sha256, trust_code)
