"""Optimizer, per-step learning-rate schedule and weight init from a TrainConfig."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cnnlab.runfolder.config import TrainConfig
from cnnlab.runfolder.values import parse_init


def build_optimizer(model: nn.Module, config: TrainConfig, fused: bool = True) -> torch.optim.Optimizer:
    """The optimizer, fused (one kernel for all parameters) where asked and this torch has it for the device.

    For the small nets, the per-parameter loop of the default step costs more than the maths.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    kind: type[torch.optim.Optimizer]
    options: dict[str, Any]
    if config.optimizer == "sgd":
        kind, options = (
            torch.optim.SGD,
            dict(
                lr=config.lr,
                momentum=config.momentum,
                nesterov=config.nesterov and config.momentum > 0,
                weight_decay=config.weight_decay,
            ),
        )
    else:
        kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        options = dict(lr=config.lr, betas=(config.momentum, 0.999), weight_decay=config.weight_decay)
    # Called with the options of SGD, Adam or AdamW, not with the base class's (params, defaults).
    make: Callable[..., torch.optim.Optimizer] = kind if config.compile else _without_dynamo_guards(kind)
    if not fused:
        return make(params, **options)
    try:
        return make(params, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or dtype
        return make(params, **options)


_UNGUARDED: dict[type, type] = {}


def _without_dynamo_guards(kind: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """`kind` with the same maths and state_dict, minus the wrappers that import torch._dynamo on first use.

    torch wraps `step`, `zero_grad`, `add_param_group` and the state_dict methods so that torch.compile
    can trace around them; their first call imports torch._dynamo, which costs about as much as
    `import torch` itself, for a run that never compiles. A compiled run keeps torch's own class.
    """
    if kind not in _UNGUARDED:
        step = inspect.unwrap(kind.step)

        def unguarded_step(self, closure=None):
            with torch.set_grad_enabled(self.defaults.get("differentiable", False)):  # as torch's wrapper does
                return step(self, closure)

        methods = {
            name: inspect.unwrap(getattr(kind, name))
            for name in ("zero_grad", "add_param_group", "state_dict", "load_state_dict")
        }
        _UNGUARDED[kind] = type(
            kind.__name__, (kind,), {**methods, "step": unguarded_step, "__module__": __name__, "__doc__": kind.__doc__}
        )
    return _UNGUARDED[kind]


def lr_factor(step: int, total_steps: int, warmup_steps: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based) for constant/step/cosine."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if config.schedule == "step":
        return config.gamma ** (step // (config.step_size * steps_per_epoch))
    if config.schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """A scheduler stepped once per optimizer step."""
    total_steps = config.epochs * steps_per_epoch
    if config.schedule == "onecycle" and total_steps >= 3:  # OneCycleLR needs a step to rise and one to fall
        # Rising phase: the warm-up if one is set, else a quarter of the run; at least two steps long.
        pct_start = min(0.5, max(0.05, config.warmup_epochs / config.epochs)) if config.warmup_epochs else 0.25
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.lr,
            total_steps=total_steps,
            pct_start=min(0.5, max(pct_start, 2 / total_steps)),
            cycle_momentum=config.optimizer == "sgd" and config.momentum > 0,
        )
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, config, steps_per_epoch)
    )


def initialize_weights(model: nn.Module, init: str) -> None:
    """Re-initialize conv and linear layers: 'default' keeps the model's own init."""
    kind, std = parse_init(init)
    if kind == "default":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if kind == "xavier":
                nn.init.xavier_uniform_(module.weight)
            elif std is not None:  # 'normal', which parse_init always gives its std
                nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
