"""Layers by name: the module paths `cnnlab summary` shows, their outputs, and sensible defaults.

Names are `dict(model.named_modules())` keys ("features.0", "stages.3.1.conv2").
Outputs are captured with forward hooks that remove themselves afterwards, as in the
summary; order is the order modules ran in, not the order they were registered.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import CnnlabError, did_you_mean

MAX_DEFAULT_FEATURE_LAYERS = 8  # `features` without --layer shows at most this many conv layers


def conv_layers(model: nn.Module) -> list[str]:
    """Paths of every Conv2d, in registration order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def layer_names(model: nn.Module) -> list[str]:
    """Every module path except the root."""
    return [name for name, _ in model.named_modules() if name]


def _unknown_layer(model: nn.Module, name: str, model_name: str | None) -> CnnlabError:
    convs = conv_layers(model)
    label = model_name or type(model).__name__
    close = did_you_mean(name, layer_names(model))
    if convs:
        valid = f"conv layers of {label}: {', '.join(convs)}"
    else:
        valid = f"{label} has no conv layers; its layers: {', '.join(layer_names(model))}"
    return CnnlabError(f"unknown --layer {name!r}{close}; {valid} (see `cnnlab summary`)")


def get_layer(model: nn.Module, name: str, model_name: str | None = None) -> nn.Module:
    """The module at path `name`; a one-line error listing the conv layers when there is none."""
    modules = dict(model.named_modules())
    if not name or name not in modules:
        raise _unknown_layer(model, name, model_name)
    return modules[name]


def capture_outputs(
    model: nn.Module, x: torch.Tensor, names: Sequence[str]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run `model(x)` without autograd and return (output, {name: that module's output}).

    A module that runs more than once keeps its first output (what a reader of the
    architecture expects at that position).
    """
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def record(module, args, output) -> None:
            if name not in captured and isinstance(output, torch.Tensor):
                captured[name] = output.detach().clone()  # an in-place ReLU after it must not change it

        return record

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return output, captured


def execution_order(
    model: nn.Module, x: torch.Tensor, kind: type[nn.Module] | tuple[type[nn.Module], ...] = nn.Conv2d
) -> list[str]:
    """Paths of the modules of type `kind` in the order they ran for input `x`."""
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, kind):
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: order.append(name)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(order))


def last_conv_layer(model: nn.Module, x: torch.Tensor) -> str | None:
    """The Conv2d that ran last (Grad-CAM's default layer), or None for a model without convolutions."""
    order = execution_order(model, x)
    return order[-1] if order else None


def default_feature_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Conv layers in execution order (Linear layers for a model without any), at most a few, evenly spread."""
    layers = execution_order(model, x) or execution_order(model, x, nn.Linear)
    if len(layers) <= MAX_DEFAULT_FEATURE_LAYERS:
        return layers
    step = (len(layers) - 1) / (MAX_DEFAULT_FEATURE_LAYERS - 1)
    return [layers[round(i * step)] for i in range(MAX_DEFAULT_FEATURE_LAYERS)]
