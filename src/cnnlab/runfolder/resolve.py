"""How a request becomes a run's config: defaults < the model's recipe < a config file < explicit values.

The recipe is the fast one unless the request names another (`cnnlab recipes`); a record recipe names its model.
A run's saved config (from a checkpoint) is checked here exactly as a requested one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cnnlab.errors import CnnlabError, unknown_choice
from cnnlab.models import list_models, model_info
from cnnlab.models.custom import is_custom
from cnnlab.models.recipes import fast_adam_recipe
from cnnlab.models.registry import check_input_size
from cnnlab.runfolder.config import DEFAULT_RECIPE, RECIPES, TrainConfig, check_keys, check_types, record_recipes
from cnnlab.runfolder.own import dataset_spec

# Your own model's fast recipe: what trains the small nets of the tutorials fastest here (Adam, one-cycle),
# for a few more epochs than theirs; the dataset is the request's.
OWN_MODEL_FAST_RECIPE = {
    k: v for k, v in fast_adam_recipe("mnist", epochs=5, lr=0.003, channels_last=False).items() if k != "dataset"
}


def saved_config(values: dict[str, Any], source: str) -> TrainConfig:
    """A run's saved config (a checkpoint's `config`) as a TrainConfig, checked exactly as `train` checks a
    requested one (`validate`, then the model's input sizes) before anything is built from it.

    The file may come from anywhere: a resize of -28 or 10**6 or a seed of 2**80 is one line here, not a
    traceback, or gigabytes allocated, further on.
    """

    try:
        config = TrainConfig.from_dict(values, "saved config").validate()
        if not is_custom(config.model):  # your own model's sizes are known once its code runs (with trust)
            check_input_size(config.model, config.resize or dataset_spec(config).image_size)
    except CnnlabError as err:
        raise CnnlabError(f"{source} holds a config cnnlab cannot use: {err}") from None
    return config


def check_model_fits(config: TrainConfig, spec) -> None:
    """One line unless the run's model takes its inputs: the dataset's images (or `resize`), its channels and
    classes (your own model's sizes are found by trying, for these)."""
    check_input_size(
        config.model,
        config.resize or spec.image_size,
        in_channels=spec.channels,
        num_classes=len(spec.classes),
        options=config.model_options,
    )


def resolve_config(
    overrides: dict[str, Any] | None = None,
    base: TrainConfig | None = None,
) -> TrainConfig:
    """defaults < recipe < the request (a config file's values under the flags, as the CLI layers them), validated.

    A fresh config starts from the model's recipe (the fast one unless `recipe` is given); with
    `base` (a resumed run's config) a recipe is applied only when asked for again.
    """
    overrides = dict(overrides or {})
    check_keys(overrides, "option")
    check_types(overrides)
    layered = overrides
    if isinstance(layered.get("keep_checkpoints"), int):
        layered["keep_checkpoints"] = str(layered["keep_checkpoints"])
    config = base or TrainConfig(recipe=DEFAULT_RECIPE)
    recipe = layered.get("recipe", None if base else config.recipe)
    if recipe in record_recipes():  # a record names its model: `cnnlab train --recipe mnist-99.2`
        model = record_recipes()[recipe][0]
        if layered.get("model", model) != model:
            raise CnnlabError(
                f"recipe {recipe!r} is a record recipe of model {model!r}, not {layered['model']!r}; "
                f"drop the model or use --recipe fast"
            )
        layered.setdefault("model", model)
    if recipe is not None:
        config = dataclasses.replace(config, **recipe_values(layered.get("model", config.model), recipe))
    return dataclasses.replace(config, **layered).validate()


def recipe_values(model: str, recipe: str) -> dict[str, Any]:
    """The TrainConfig values of a model's named recipe."""

    records = record_recipes()
    if recipe not in RECIPES and recipe not in records:
        raise unknown_choice("recipe", recipe, [*RECIPES, *records])
    if is_custom(model):
        if recipe in records:
            raise CnnlabError(f"recipe {recipe!r} is a record recipe of {records[recipe][0]}, not of your own model")
        return dict(OWN_MODEL_FAST_RECIPE) if recipe == "fast" else {}  # nothing was published for it
    if model not in list_models():
        raise unknown_choice("model", model, list_models())
    if recipe == "none":
        return {}
    info = model_info(model)
    if recipe in records:
        values = dict(info.records[recipe])
    else:
        values = dict(info.reference_recipe if recipe == "reference" else info.fast_recipe)
    check_keys(values, f"{model} {recipe} recipe")
    return values
