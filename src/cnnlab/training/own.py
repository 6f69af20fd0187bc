"""What `train` does for your own model and data before a run starts: load the model you named, note
its source's sha256 (the run folder keeps a copy), and check that a continued run sees the same data."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.custom import is_custom, load_user_model, name_for, register_instance, source_code, source_of
from cnnlab.runfolder.config import TrainConfig
from cnnlab.runfolder.own import canonical_dataset


def model_name_of(model: Any) -> str:
    """`train(model=...)` with a class or factory (named by where it is defined) or an instance (registered
    for this process only: it warns that the run cannot be reopened without the code)."""
    if isinstance(model, nn.Module):
        return register_instance(model)
    if callable(model):
        return name_for(model)
    raise CnnlabError(
        f"model must be a model name, FILE.py:NAME, MODULE:NAME, an nn.Module class or factory, or an "
        f"nn.Module; got {type(model).__name__}"
    )


def own_code_and_data(config: TrainConfig) -> TrainConfig:
    """A new run's config with your own model loaded (its canonical name and source sha256 recorded) and a
    path to your own data made absolute; a catalog run records neither."""
    model, sha256 = config.model, None
    if is_custom(model):
        model = load_user_model(model)  # the request names it: running the user's own file is what they asked
        if not model.startswith("instance:"):
            sha256 = source_of(model)[1]
    return config.replace(model=model, model_sha256=sha256, dataset=canonical_dataset(config.dataset), data_origin=None)


def model_source(config: TrainConfig) -> bytes:
    """The exact bytes the run's model was executed from (what its model_sha256 hashes)."""
    return source_code(config.model)


def check_same_data(imported: dict | None, config: TrainConfig) -> None:
    """A run continued by `--resume auto` trains on the data it started with, not on a folder changed since."""
    recorded = config.data_origin
    if imported and recorded and imported.get("sha256") != recorded.get("sha256"):
        raise CnnlabError(
            f"{config.dataset} changed since the run in {config.out} started (content sha256 "
            f"{str(recorded.get('sha256'))[:12]}... then, {str(imported.get('sha256'))[:12]}... now); "
            "restore it, or start a new run with another --out"
        )


def is_main_process() -> bool:
    """Rank 0 (or no torchrun): the process that prints an import's progress and report."""
    return int(os.environ.get("RANK", "0")) == 0
