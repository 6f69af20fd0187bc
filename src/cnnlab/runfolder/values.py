"""Checks and parsers of single option values, for the config schema and for anything that takes option text.

Nothing here knows TrainConfig: each function takes the value (and, for typed ones, the field's annotation
as a string), so the schema in `config.py` and the CLI can share them without importing each other.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cnnlab.errors import CnnlabError, unknown_choice

DEVICES = ("auto", "cpu", "cuda", "mps")
_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "dict": (dict,)}


def check_type(name: str, value: Any, annotation: str) -> None:
    """`value` has the type of a field annotated `annotation` ("int", "float | None", ...), or a one-line error."""
    kind = annotation.replace(" | None", "").strip()
    if value is None and "None" in annotation:
        return
    if not isinstance(value, _TYPES[kind]) or (isinstance(value, bool) and kind != "bool"):
        if name == "keep_checkpoints" and isinstance(value, int) and not isinstance(value, bool):
            return  # `keep_checkpoints: 3` in YAML; normalised by the caller
        what = {"float": "a number", "int": "an integer", "bool": "true or false"}.get(kind, f"a {kind}")
        raise CnnlabError(f"{name} must be {what}, got {value!r:.60}")


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_EXAMPLES = {"int": "3", "float": "0.01", "bool": "true", "dict": '{"batch_norm": true}', "str": "x"}


def parse_typed(name: str, text: str, annotation: str) -> Any:
    """The value of option `name` from text, typed by its field's annotation: the one parser of command-line
    flags, `--set name=value`, sweep axes and search spaces. `none`/`null` is None where the field allows it."""
    base = annotation.replace(" | None", "").strip()
    if "None" in annotation and base != "str" and text.lower() in ("none", "null"):
        return None
    try:
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
        if base == "bool":
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if base == "dict":
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            check_nesting(value, name)
            return value
    except (ValueError, RecursionError):
        raise CnnlabError(
            f"{name}={text!r:.80}: {name} takes {'an' if base == 'int' else 'a'} {base} value, "
            f"e.g. {name}={_EXAMPLES[base]}"
        ) from None
    return text


def parse_normalize(value: str) -> tuple[float, float] | str:
    """'dataset' | 'none' | (mean, std)."""
    if value in ("dataset", "none"):
        return value
    try:
        mean, std = (float(v) for v in value.split(","))
    except ValueError:
        raise CnnlabError(f"--normalize must be 'dataset', 'none' or MEAN,STD (e.g. 0.5,0.5), got {value!r}") from None
    if std <= 0:
        raise CnnlabError(f"--normalize STD must be positive, got {std}")
    return mean, std


def parse_init(value: str) -> tuple[str, float | None]:
    """'default' | 'xavier' | ('normal', std)."""
    if value in ("default", "xavier"):
        return value, None
    if value.startswith("normal:"):
        try:
            std = float(value.split(":", 1)[1])
            if std > 0:
                return "normal", std
        except ValueError:
            pass
    raise CnnlabError(f"--init must be 'default', 'xavier' or normal:STD (e.g. normal:0.01), got {value!r}")


_CUDA_INDEX = re.compile(r"cuda:[0-9]{1,4}")


def check_device(name: Any) -> str:
    """The one check of a device name: train's --device, eval's and inspect's, and `load_run(device=...)`.

    auto|cpu|cuda|mps, or cuda:N for one GPU of several; whether it is there is `pick_device`'s to say.
    """
    if not isinstance(name, str):
        raise CnnlabError(f"device must be a name ({'|'.join(DEVICES)} or cuda:N), got {name!r:.60}")
    if name not in DEVICES and not _CUDA_INDEX.fullmatch(name):
        raise unknown_choice("device", name, [*DEVICES, "cuda:N"])
    return name


# Bounds on a config file, far above any real one (cnnlab's own are under 2 KB, model_options 1 level deep):
# a small hostile file must not take the stack, the memory or minutes before the first check.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32  # nested mappings/lists
MAX_CONFIG_NODES = 10_000  # values in all


def check_nesting(value: Any, source: str) -> None:
    """Refuse a value nested deeper than MAX_CONFIG_DEPTH or holding more than MAX_CONFIG_NODES values.

    Iterative, so it cannot itself run out of stack on the very input it guards against.
    """
    stack, nodes = [(value, 1)], 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_CONFIG_NODES:
            raise CnnlabError(f"{source} holds more than {MAX_CONFIG_NODES:,} values; is it a config file?")
        if isinstance(item, (dict, list, tuple)):
            if depth > MAX_CONFIG_DEPTH:
                raise CnnlabError(f"{source} is nested more than {MAX_CONFIG_DEPTH} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def check_model_options(options: Any) -> None:
    """A model_options mapping holds option names (strings) and values of bounded size (not a dict: `check_types`)."""
    if not isinstance(options, dict):
        return
    check_nesting(options, "model_options")
    for key in options:
        if not isinstance(key, str):
            raise CnnlabError(f"model_options keys must be option names (strings), got {key!r:.60}")
