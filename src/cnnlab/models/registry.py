"""The model registry: builders registered by name, each beside its metadata.

As in timm, a model file defines `model_infos` (model name -> ModelInfo) before
its builders; `@register_model` pairs a builder with its entry, so the trainer,
`cnnlab models` and the docs read sizes, recipes and results from one place.
Recipes are built with the helpers in `cnnlab.models.recipes`.
A name like `path/to/file.py:Name` or `pkg.mod:Name` is the user's own network (`cnnlab.models.custom`):
model_info, create_model and check_input_size take it once it is loaded (load_user_model), never importing it
themselves; its ModelInfo is synthesized, with the input sizes found by trying. list_models lists none of them.
A builder is `builder(in_channels, num_classes, *, option=default, ...)`; the
builder function `nin_single` registers the model `nin-single`.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError, did_you_mean, unknown_choice
from cnnlab.models import custom


@dataclass(frozen=True)
class ModelInfo:
    """Everything cnnlab knows about a model besides its layers."""

    name: str
    family: str
    paper: str
    default_input_size: int  # H = W the model was designed for
    min_input_size: int  # smallest H = W the layers accept
    options: dict[str, str]  # option name -> one-line description with its default
    reference_recipe: dict[str, Any]  # TrainConfig keys that produced `reference_result`
    reference_result: str  # the published number, with dataset and epochs
    fast_recipe: dict[str, Any]  # TrainConfig keys: a CPU-friendly modern recipe
    # Parameters with the default options, in_channels=1 and num_classes=10: the builder's defaults,
    # which are also the reference dataset's (MNIST or Fashion-MNIST); a test checks it against the builder.
    num_params: int
    max_input_size: int | None = None  # largest H = W when a fixed-size linear layer follows the flatten
    # Record recipes (`cnnlab train --recipe NAME`): name -> TrainConfig keys, each a fixed recipe whose final
    # test accuracy, averaged over seeds, reaches the target in its name (benchmarks/records.py measures them).
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


_builders: dict[str, Callable[..., nn.Module]] = {}
_infos: dict[str, ModelInfo] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its name (underscores become hyphens) with its module's `model_infos` entry."""
    name = fn.__name__.replace("_", "-")
    if name in _builders:
        other = _builders[name]
        raise CnnlabError(
            f"model {name!r} is already registered by {other.__module__}.{other.__qualname__}; "
            "rename the builder function"
        )
    info = getattr(sys.modules[fn.__module__], "model_infos", {}).get(name)
    if info is None:
        raise CnnlabError(
            f"model {name!r} has no metadata: add model_infos[{name!r}] = ModelInfo(...) "
            f"to {fn.__module__} before its builder"
        )
    options = builder_options(fn)
    if info.name != name or set(info.options) != set(options):
        raise CnnlabError(
            f"model {name!r}: ModelInfo name {info.name!r} / options {sorted(info.options)} "
            f"do not match the builder's keyword options {sorted(options)}"
        )
    _builders[name] = fn
    _infos[name] = info
    return fn


def builder_options(fn: Callable[..., nn.Module]) -> dict[str, Any]:
    """The builder's keyword-only options and their defaults."""
    params = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _natural_key(name: str) -> list:
    """'vgg11' sorts after 'vgg2': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style wildcard, naturally sorted."""
    return sorted(fnmatch.filter(_builders, pattern), key=_natural_key)


def model_info(name: str) -> ModelInfo:
    """The metadata of a registered model, or of a loaded custom one; an unknown name suggests the closest ones."""
    if name not in _infos:
        if custom.is_custom(name):
            return _custom_info(name)
        raise unknown_choice("model", name, list_models())
    return _infos[name]


def _custom_info(name: str) -> ModelInfo:
    """A loaded custom model's metadata: sizes found by trying and parameters, both at 1 channel and 10 classes."""
    canonical = custom.loaded_name(name)  # not loaded: a one-line refusal, nothing imported
    low, high, default = custom.probe_input_sizes(canonical, 1, 10)
    return ModelInfo(
        name=canonical,
        family="custom",
        paper=custom.origin(canonical),
        default_input_size=default,
        min_input_size=low,
        max_input_size=high,
        options=custom.option_docs(canonical),
        reference_recipe={},
        reference_result="",
        fast_recipe={},
        num_params=custom.num_params(canonical),
        records={},
    )


def input_sizes(
    name: str, in_channels: int = 1, num_classes: int = 10, options: dict[str, Any] | None = None
) -> tuple[int, int | None, int]:
    """(min, max or None, default) input H = W of a model; a custom one's are found by trying for these arguments."""
    if name not in _infos and custom.is_custom(name):
        canonical = custom.loaded_name(name)
        _check_positive("in_channels", in_channels)
        _check_positive("num_classes", num_classes)
        custom.check_options(canonical, options or {})
        return custom.probe_input_sizes(canonical, in_channels, num_classes, options)
    info = model_info(name)
    return info.min_input_size, info.max_input_size, info.default_input_size


# How option values are checked: option -> (test, what the value must be).
_OPTION_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "width": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a positive integer"),
    "dropout": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1, "a number in [0, 1)"),
    "batch_norm": (lambda v: isinstance(v, bool), "true or false"),
}


def _check_options(name: str, options: dict[str, Any]) -> None:
    valid = list(model_info(name).options)
    for key, value in options.items():
        if key not in valid:
            choices = f"valid options: {', '.join(valid)}" if valid else "it takes no options"
            raise CnnlabError(f"unknown option {key!r} for model {name!r}{did_you_mean(key, valid)}; {choices}")
        test, must_be = _OPTION_RULES.get(key, (lambda v: True, ""))
        if not test(value):
            raise CnnlabError(f"option {key!r} of model {name!r} must be {must_be}, got {value!r}")


def _check_positive(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CnnlabError(f"{what} must be a positive integer, got {value!r}")


def create_model(
    name: str, in_channels: int = 1, num_classes: int = 10, *, image_size: int | None = None, **options: Any
) -> nn.Module:
    """Build a registered model, or a loaded custom one; it rejects inputs it cannot take before any layer runs.

    `image_size`: the input H = W the model will see. A custom model whose signature takes `image_size`
    (or `input_size`, or **kwargs) is built for it (default: its default input size); for any model, a size
    it cannot take is a one-line error here.
    """
    if name not in _infos and custom.is_custom(name):
        return _create_custom(name, in_channels, num_classes, image_size, options)
    model_info(name)  # an unknown name fails before the argument checks
    _check_positive("in_channels", in_channels)
    _check_positive("num_classes", num_classes)
    _check_options(name, options)
    if image_size is not None:
        check_input_size(name, image_size)
    model = _builders[name](in_channels, num_classes, **options)
    model.register_forward_pre_hook(InputCheck(name, in_channels))
    return model


def _create_custom(
    name: str, in_channels: int, num_classes: int, image_size: int | None, options: dict[str, Any]
) -> nn.Module:
    canonical = custom.loaded_name(name)  # not loaded: a one-line refusal, nothing imported
    sizes = input_sizes(canonical, in_channels, num_classes, options)
    if image_size is not None:
        _check_positive("image_size", image_size)
        _check_size(canonical, (image_size, image_size), sizes)
    model = custom.build(canonical, in_channels, num_classes, image_size=image_size or sizes[2], **options)
    model.register_forward_pre_hook(InputCheck(canonical, in_channels, sizes))
    return model


def check_input_size(
    model_name: str,
    size: int | tuple[int, int],
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    options: dict[str, Any] | None = None,
) -> None:
    """Raise a one-line CnnlabError when `model_name` cannot take inputs of `size` (H = W, or (H, W)).

    The one wording for every caller (the forward pre-hook, `cnnlab summary`, the trainer): the model,
    the sizes it takes, and the `resize=` that fixes it (its default input size, always accepted).
    A custom model's sizes are found by trying, for `in_channels`, `num_classes` and `options`
    (a registered model's do not depend on them).
    """
    _check_size(model_name, size, input_sizes(model_name, in_channels, num_classes, options))


def _check_size(model_name: str, size: int | tuple[int, int], sizes: tuple[int, int | None, int]) -> None:
    height, width = (size, size) if isinstance(size, int) else size
    low, high, default = sizes
    if min(height, width) >= low and (high is None or max(height, width) <= high):
        return
    accepted = (
        f"{low}x{low} pixels or larger"
        if high is None
        else f"exactly {low}x{low} pixels"
        if low == high
        else f"{low}x{low} to {high}x{high} pixels"
    )
    raise CnnlabError(f"{model_name} takes inputs of {accepted}, got {height}x{width}; pass resize={default}")


@dataclass(frozen=True)
class InputCheck:
    """Forward pre-hook: a one-line error for an input the model cannot take (a class, so models pickle)."""

    model: str
    in_channels: int
    # (min, max, default) input size of a custom model, found when it was built; None: the registry's
    sizes: tuple[int, int | None, int] | None = None

    def __call__(self, module: nn.Module, args: tuple) -> None:
        if torch.jit.is_tracing():  # a trace is fixed to its example's shape; checking would only warn
            return
        x = args[0] if args else None
        if x is None or getattr(x, "dim", lambda: 0)() != 4:
            shape = tuple(x.shape) if x is not None and hasattr(x, "shape") else type(x).__name__
            raise CnnlabError(f"{self.model} expects a batch of images shaped (N, C, H, W), got {shape}")
        channels, height, width = x.shape[1:]
        if channels != self.in_channels:
            raise CnnlabError(
                f"{self.model} was built for {self.in_channels} input channel(s), got {channels}; "
                f"create it with in_channels={channels}"
            )
        if self.sizes is None:
            check_input_size(self.model, (height, width))
        else:
            _check_size(self.model, (height, width), self.sizes)
