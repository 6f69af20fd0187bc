"""The search space of `cnnlab tune`: `--space` items parsed, checked and turned into Optuna suggestions.

Each item is KEY=VALUES, KEY a training option (`cnnlab train --help`, underscores) or `model_options.NAME`:

    lr=log:1e-4..1e-1        a log-uniform range (float options; an int option samples integers)
    weight_decay=0..1e-3     a uniform range
    epochs=2..6              an int option's range: integers, both ends included
    batch_size=64,128,256    a list of values to choose from (typed by the option, as for `--set`)
    model_options.width=1,2  a model option (values read as JSON: 1, 0.5, true, "x")

Options whose values hold commas or JSON (normalize, model_options) take one value per item: repeat the key
for alternatives (`normalize=dataset normalize=0.5,0.5`). Everything is checked before anything is written:
each value (both ends of a range) goes through the same validation a training run applies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import CnnlabError, did_you_mean

MODEL_OPTIONS_PREFIX = "model_options."
# Options a search may not vary: set by the command itself, or what the selection is measured on.
FIXED = {
    "model": "it is the MODEL argument",
    "dataset": "set it with --dataset",
    "out": "the study folder is -o",
    "val_split": "set it with --val-split (the selection is measured on it)",
    "limit_test": "the test set is not part of the search",
    "eval_every": "pruning needs a validation score every epoch",
    "data_dir": "set it with --data-dir",
    "device": "set it with --device",
    "progress": "set it with --progress",
    "tensorboard": "set it with --tensorboard",
    "backend": "it is not a training choice",
    "dist_timeout": "it is not a training choice",
    "sync_bn": "it is not a training choice",
    "init_from": "it is not a training choice",
    "keep_checkpoints": "it is not a training choice",
    "target_acc": "a target would end trials at different epochs than the pruner decides",
}
NO_SPLIT = {"normalize", "model_options"}  # values that hold commas themselves: one per item
MAX_GRID_INTS = 1000  # an int range expanded for --sampler grid


@dataclass(frozen=True)
class Param:
    """One searched option: a float or int range (maybe log-scaled) or a list of choices."""

    name: str  # "lr", "model_options.width"
    kind: str  # "float" | "int" | "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()  # the values as trained (JSON objects allowed)

    @property
    def text(self) -> str:
        if self.kind == "categorical":
            return f"{self.name}=" + ",".join(_show(c) for c in self.choices)
        return f"{self.name}={'log:' if self.log else ''}{_show(self.low)}..{_show(self.high)}"

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"name": self.name, "kind": self.kind, "choices": list(self.choices)}
        return {"name": self.name, "kind": self.kind, "low": self.low, "high": self.high, "log": self.log}

    # Optuna keeps categorical choices as plain JSON scalars: an object (a model_options dict) goes as its JSON text.
    def _encoded(self) -> list:
        return [json.dumps(c, sort_keys=True) if isinstance(c, (dict, list)) else c for c in self.choices]

    def suggest(self, trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        encoded = self._encoded()
        value = trial.suggest_categorical(self.name, encoded)
        return self.choices[encoded.index(value)]

    @property
    def bounds(self) -> tuple[Any, Any]:
        """(low, high) of a range."""
        assert self.low is not None and self.high is not None, f"{self.name} is not a range"
        return self.low, self.high

    def grid_values(self) -> list:
        if self.kind == "categorical":
            return self._encoded()
        low, high = self.bounds
        if self.kind == "int" and high - low < MAX_GRID_INTS:
            return list(range(low, high + 1))
        raise SpaceError(
            f"--sampler grid needs lists of values; --space {self.text} is a range "
            f"(write the values out, e.g. {self.name}=" + ",".join(_show(v) for v in _examples(self)) + ")"
        )

    def ends(self) -> list:
        """The values to check: the choices, or both ends of a range."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


def _examples(param: Param) -> list:
    low, high = param.bounds
    if param.log:
        return [low, math.sqrt(low * high), high]
    return [low, (low + high) / 2, high]


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)) or value is None or isinstance(value, bool):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    def to_list(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.params]

    def texts(self) -> list[str]:
        return [p.text for p in self.params]

    def suggest(self, trial) -> dict[str, Any]:
        """{param name: value} for this trial (fixed values for an enqueued or retried trial)."""
        return {p.name: p.suggest(trial) for p in self.params}

    def grid(self) -> dict[str, list]:
        return {p.name: p.grid_values() for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())


def apply(options: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Training options with a trial's values set (model options merged into model_options)."""
    result = dict(options)
    for name, value in values.items():
        if name.startswith(MODEL_OPTIONS_PREFIX):
            result["model_options"] = {**result.get("model_options", {}), name[len(MODEL_OPTIONS_PREFIX) :]: value}
        else:
            result[name] = value
    return result


# ---- parsing ------------------------------------------------------------------------------


class SpaceError(CnnlabError):
    """A --space item that cannot be searched (its own class: the message already speaks of flags)."""


def _error(item: str, why: str) -> CnnlabError:
    return SpaceError(f"--space {item}: {why}")


_EXAMPLE = "e.g. lr=log:1e-4..1e-1, batch_size=64,128 or model_options.width=1,2"


def parse_space(items: Sequence[str], model: str) -> Space:
    """`["lr=log:1e-3..1", "batch_size=64,128"]` -> a Space; one-line CnnlabError for anything unusable."""
    from cnnlab.models import model_info  # here: the config schema and resolution load on use
    from cnnlab.runfolder.config import field_types

    if not items:
        raise SpaceError(f"--space needs at least one KEY=VALUES item, {_EXAMPLE}")
    types = field_types()
    params: dict[str, Param] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_") if not key.strip().startswith(MODEL_OPTIONS_PREFIX) else key.strip()
        text = text.strip()
        if not sep or not key or not text:
            raise SpaceError(f"--space expects KEY=VALUES, {_EXAMPLE}; got {item!r}")
        if key.startswith(MODEL_OPTIONS_PREFIX):
            option = key[len(MODEL_OPTIONS_PREFIX) :]
            valid = list(model_info(model).options)
            if option not in valid:
                choices = f"its options: {', '.join(valid)}" if valid else "it takes no options"
                raise _error(item, f"model {model!r} has no option {option!r}{did_you_mean(option, valid)}; {choices}")
            kind = None  # typed by the values themselves (JSON)
        elif key in FIXED:
            raise _error(item, f"{key} cannot be searched: {FIXED[key]}")
        elif key not in types:
            raise _error(
                item,
                f"unknown option {key!r}{did_you_mean(key, types)}; use the names of "
                "`cnnlab train --help` with underscores, or model_options.NAME",
            )
        else:
            kind = types[key].replace(" | None", "").strip()
        param = _parse_one(item, key, kind, text)
        if key in params:
            old = params[key]
            if old.kind != "categorical" or param.kind != "categorical":
                raise _error(item, f"{key} is given twice; give a range once, or list its values in one item")
            param = Param(
                key, "categorical", choices=old.choices + tuple(c for c in param.choices if c not in old.choices)
            )
        params[key] = param
    return Space(tuple(params.values()))


def _number(item: str, key: str, kind: str | None, text: str) -> float | int:
    try:
        value = int(text) if kind == "int" else float(text)
    except ValueError:
        wanted = "an integer" if kind == "int" else "a number"
        raise _error(item, f"{text!r} is not {wanted}") from None
    if not math.isfinite(value):
        raise _error(item, f"{text!r} is not a finite number")
    return value


def _parse_one(item: str, key: str, kind: str | None, text: str) -> Param:
    from cnnlab.runfolder.config import parse_option  # here: the config schema and resolution load on use

    log = text.startswith("log:")
    body = text[4:].strip() if log else text
    if ".." in body:
        if kind not in ("int", "float", None):
            raise _error(item, f"{key} takes a list of values (LOW..HIGH ranges are for numbers), e.g. {key}=A,B")
        low_text, _, high_text = body.partition("..")
        if kind is None:  # a model option: an int range when both ends are written as integers
            kind = "int" if all(_is_int(t.strip()) for t in (low_text, high_text)) else "float"
        low, high = (_number(item, key, kind, t.strip()) for t in (low_text, high_text))
        if log and low <= 0:
            raise _error(item, f"a log range needs LOW > 0, got {_show(low)}")
        if not low < high:
            raise _error(item, f"LOW must be below HIGH, got {_show(low)}..{_show(high)}")
        return Param(key, kind, low, high, log)
    if log:
        raise _error(item, f"log: goes with a range, e.g. {key}=log:1e-4..1e-1")
    parts = [body] if key in NO_SPLIT else [p.strip() for p in body.split(",")]
    choices: list[Any] = []
    for part in parts:
        if not part:
            raise _error(item, f"an empty value in {body!r}")
        if kind is None:
            try:
                value = json.loads(part)
            except ValueError:
                value = part  # a bare word: the string
        else:
            try:
                value = parse_option(key, part)
            except CnnlabError as err:
                raise _error(item, str(err).split(": ", 1)[-1]) from None
        if value not in choices:
            choices.append(value)
    return Param(key, "categorical", choices=tuple(choices))


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


# ---- checking against the training configuration --------------------------------------------


def check_space(space: Space, base: dict[str, Any]) -> None:
    """Every value of every param (both ends of a range) makes a valid training config with `base`,
    and builds the model where it is a model option: a bad value fails now, not in trial 17."""
    # here: the config schema and resolution load on use
    from cnnlab.models import create_model
    from cnnlab.runfolder.own import spec_of_request
    from cnnlab.runfolder.resolve import resolve_config

    spec = spec_of_request(base["dataset"], base)
    for param in space.params:
        for value in param.ends():
            try:
                config = resolve_config(apply(base, {param.name: value}))
                if param.name.startswith(MODEL_OPTIONS_PREFIX):
                    create_model(
                        config.model, in_channels=spec.channels, num_classes=len(spec.classes), **config.model_options
                    )
            except CnnlabError as err:
                raise _error(param.text, str(err)) from None
