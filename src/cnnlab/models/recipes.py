"""Training recipes as data: the TrainConfig keys a model's metadata sets, filled to the full set.

`recipe` is the general form. The helpers below it are the recipe kinds the model files
share, so that a file states only what differs from its kind:
- `fast_recipe`: the modern CPU-friendly recipe (SGD with Nesterov momentum, weight
  decay, a one-cycle schedule, channels-last, automatic precision);
- `fast_adam_recipe`: the same idea with Adam, for the MNIST tutorial networks;
- `tutorial_recipe`: the PyTorch MNIST tutorial's reference set-up;
- `d2l_recipe`: d2l's Fashion-MNIST reference set-up (plain SGD, 10 epochs, raw pixels).

A reference recipe keeps the published hyper-parameters, not the published arithmetic: the 28-pixel
models run it in the layout and precision that trained them fastest here (`FULL_SPEED`, or fp32 where
bf16 did not pay), after `benchmarks/reproduce.py` showed the published accuracy still holds (fp32 and
auto side by side over seeds). `--precision fp32` gives the bit-exact fp32 run back.
"""

from __future__ import annotations

from typing import Any

# The TrainConfig keys a recipe may set.
RECIPE_KEYS = (
    "dataset",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "schedule",
    "warmup_epochs",
    "label_smoothing",
    "resize",
    "augment",
    "normalize",
    "init",
    "seed",
    "model_options",
    "channels_last",
    "precision",
    "tta",
    "eval_every",
)

# What a recipe means when it does not say: plain SGD, no schedule, no regularisation, no resize.
# Every recipe is filled to the full set so it never depends on TrainConfig's own defaults.
_PLAIN = {
    "optimizer": "sgd",
    "momentum": 0.0,
    "nesterov": False,
    "weight_decay": 0.0,
    "schedule": "constant",
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "resize": None,
    "augment": False,
    "normalize": "dataset",
    "init": "default",
    "model_options": {},
    "channels_last": False,
    "precision": "fp32",
    "tta": False,
    "eval_every": 1,
}

# What the fast recipes share: batch 128, a one-cycle schedule, inputs normalized by the dataset's
# statistics, and the CPU layout and precision that ran fastest for most models (a model where
# they did not pays off says so where it overrides them).
_FAST = {"batch_size": 128, "schedule": "onecycle", "normalize": "dataset", "channels_last": True, "precision": "auto"}

# The layout and precision that ran the conv nets' steps fastest on a CPU (bf16 where the CPU computes it
# natively; a GPU stays in fp32 under "auto"), for the recipes that do not say otherwise.
FULL_SPEED = {"channels_last": True, "precision": "auto"}


def recipe(dataset: str, epochs: int, batch_size: int, lr: float, **values: Any) -> dict[str, Any]:
    """A complete recipe dict: the given values over plain SGD with no extras."""
    unknown = set(values) - set(RECIPE_KEYS)
    if unknown:  # a typo in a model file, not user input
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; valid: {', '.join(RECIPE_KEYS)}")
    values = {**_PLAIN, "dataset": dataset, "epochs": epochs, "batch_size": batch_size, "lr": lr, **values}
    values["model_options"] = dict(values["model_options"])  # never shared between recipes
    return values


def _over(defaults: dict[str, Any], dataset: str, epochs: int, lr: float, values: dict[str, Any]) -> dict[str, Any]:
    """`recipe` with `defaults` under the caller's `values` (a value may override a default)."""
    merged = {**defaults, **values}
    return recipe(dataset, epochs, merged.pop("batch_size"), lr, **merged)


def fast_recipe(dataset: str, epochs: int, lr: float, **values: Any) -> dict[str, Any]:
    """The modern CPU-friendly recipe: SGD, Nesterov momentum 0.9, weight decay 5e-4, one-cycle, batch 128."""
    return _over({**_FAST, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}, dataset, epochs, lr, values)


def fast_adam_recipe(dataset: str, epochs: int, lr: float, **values: Any) -> dict[str, Any]:
    """`fast_recipe` with Adam (beta1 0.9) and no weight decay: what trains the MNIST tutorial nets fastest."""
    return _over({**_FAST, "optimizer": "adam", "momentum": 0.9}, dataset, epochs, lr, values)


def tutorial_recipe(epochs: int, **values: Any) -> dict[str, Any]:
    """The PyTorch MNIST tutorial: batch 64, SGD lr 0.01 momentum 0.5, MNIST's mean and std (at `FULL_SPEED`)."""
    return recipe("mnist", epochs, 64, 0.01, **{"momentum": 0.5, "normalize": "0.1307,0.3081", **FULL_SPEED, **values})


def d2l_recipe(batch_size: int, lr: float, **values: Any) -> dict[str, Any]:
    """d2l's reference: Fashion-MNIST, 10 epochs, plain SGD, pixels in [0, 1] (`resize` up to the model's size)."""
    return recipe("fashion-mnist", 10, batch_size, lr, **{"normalize": "none", **values})
