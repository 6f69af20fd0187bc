"""Recipes are data: every model's fast and reference recipe resolve to exactly these values.

A snapshot of what each ModelInfo said before the recipe helpers in registry.py replaced
the keyword lists copied from model file to model file; a helper that changes any value,
or its type (0.0 and 0 compare equal), fails here. Models registered later need no entry.
Changed on purpose since: the 28-pixel reference recipes run in their fastest layout and precision
(benchmarks/reproduce.py: the published accuracy holds), and every recipe states tta and eval_every.
"""
from __future__ import annotations

import pytest

from cnnlab.models import list_models, model_info

# name -> (fast_recipe, reference_recipe)
RECIPES = {
    "alexnet": (
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 65, "augment": True, "normalize": "dataset",
         "init": "default", "model_options": {"batch_norm": True}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 5, "batch_size": 128, "lr": 0.05},
        {"optimizer": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 224, "augment": False, "normalize": "none",
         "init": "xavier", "model_options": {}, "channels_last": False, "precision": "fp32", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 10, "batch_size": 128, "lr": 0.01},
    ),
    "cnn-tiny": (
        {"optimizer": "adam", "momentum": 0.9, "nesterov": False, "weight_decay": 0.0, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "dataset",
         "init": "default", "model_options": {}, "channels_last": True, "precision": "fp32", "tta": False, "eval_every": 1, "dataset": "mnist",
         "epochs": 3, "batch_size": 128, "lr": 0.01},
        {"optimizer": "sgd", "momentum": 0.5, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "0.1307,0.3081",
         "init": "default", "model_options": {}, "channels_last": True, "precision": "fp32", "tta": False, "eval_every": 1, "dataset": "mnist",
         "epochs": 1, "batch_size": 64, "lr": 0.01},
    ),
    "convnet": (
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "dataset",
         "init": "default", "model_options": {"batch_norm": True}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1,
         "dataset": "mnist", "epochs": 3, "batch_size": 128, "lr": 0.1},
        {"optimizer": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "none",
         "init": "default", "model_options": {}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1, "dataset": "mnist",
         "epochs": 10, "batch_size": 128, "lr": 0.05, "seed": 1},
    ),
    "fast-cnn": (
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.1, "resize": None, "augment": False, "normalize": "dataset",
         "init": "default", "model_options": {}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1, "dataset": "mnist",
         "epochs": 2, "batch_size": 128, "lr": 0.05},
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.1, "resize": None, "augment": False, "normalize": "dataset",
         "init": "default", "model_options": {}, "channels_last": True, "precision": "fp32", "tta": False, "eval_every": 1, "dataset": "mnist",
         "epochs": 2, "batch_size": 128, "lr": 0.05, "seed": 1},
    ),
    "googlenet": (
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 64, "augment": True, "normalize": "dataset",
         "init": "default", "model_options": {"batch_norm": True}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 5, "batch_size": 128, "lr": 0.05},
        {"optimizer": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 96, "augment": False, "normalize": "none",
         "init": "default", "model_options": {}, "channels_last": False, "precision": "fp32", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 10, "batch_size": 128, "lr": 0.1},
    ),
    "inception-mini": (
        {"optimizer": "adam", "momentum": 0.9, "nesterov": False, "weight_decay": 0.0, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "dataset",
         "init": "default", "model_options": {}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1, "dataset": "mnist",
         "epochs": 3, "batch_size": 128, "lr": 0.003},
        {"optimizer": "sgd", "momentum": 0.5, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "0.1307,0.3081",
         "init": "default", "model_options": {}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1, "dataset": "mnist",
         "epochs": 10, "batch_size": 64, "lr": 0.01},
    ),
    "lenet": (
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "dataset",
         "init": "default", "model_options": {"batch_norm": True}, "channels_last": False, "precision": "fp32", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 5, "batch_size": 128, "lr": 0.1},
        {"optimizer": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "none",
         "init": "xavier", "model_options": {}, "channels_last": True, "precision": "fp32", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 10, "batch_size": 256, "lr": 0.9},
    ),
    "mlp-tiny": (
        {"optimizer": "adam", "momentum": 0.9, "nesterov": False, "weight_decay": 0.0, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "dataset",
         "init": "default", "model_options": {}, "channels_last": False, "precision": "fp32", "tta": False, "eval_every": 1, "dataset": "mnist",
         "epochs": 3, "batch_size": 128, "lr": 0.01},
        {"optimizer": "sgd", "momentum": 0.5, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "0.1307,0.3081",
         "init": "default", "model_options": {}, "channels_last": False, "precision": "fp32", "tta": False, "eval_every": 1, "dataset": "mnist",
         "epochs": 1, "batch_size": 64, "lr": 0.01},
    ),
    "nin": (
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 67, "augment": True, "normalize": "dataset",
         "init": "default", "model_options": {"batch_norm": True}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 5, "batch_size": 128, "lr": 0.05},
        {"optimizer": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 224, "augment": False, "normalize": "none",
         "init": "xavier", "model_options": {}, "channels_last": False, "precision": "fp32", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 10, "batch_size": 128, "lr": 0.1},
    ),
    "nin-single": (
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 67, "augment": True, "normalize": "dataset",
         "init": "default", "model_options": {"batch_norm": True}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 5, "batch_size": 128, "lr": 0.05},
        {"optimizer": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 224, "augment": False, "normalize": "0.5,0.5",
         "init": "xavier", "model_options": {}, "channels_last": False, "precision": "fp32", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 10, "batch_size": 64, "lr": 0.1},
    ),
    "resnet18": (
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 64, "augment": True, "normalize": "dataset",
         "init": "default", "model_options": {}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 5, "batch_size": 128, "lr": 0.05},
        {"optimizer": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 96, "augment": False, "normalize": "none",
         "init": "default", "model_options": {}, "channels_last": False, "precision": "fp32", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 10, "batch_size": 256, "lr": 0.05},
    ),
    "resnet-mini": (
        {"optimizer": "adam", "momentum": 0.9, "nesterov": False, "weight_decay": 0.0, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "dataset",
         "init": "default", "model_options": {}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1, "dataset": "mnist",
         "epochs": 3, "batch_size": 128, "lr": 0.003},
        {"optimizer": "sgd", "momentum": 0.5, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": None, "augment": False, "normalize": "0.1307,0.3081",
         "init": "default", "model_options": {}, "channels_last": True, "precision": "auto", "tta": False, "eval_every": 1, "dataset": "mnist",
         "epochs": 10, "batch_size": 64, "lr": 0.01},
    ),
    "vgg11": (
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005, "schedule": "onecycle",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 64, "augment": True, "normalize": "dataset",
         "init": "default", "model_options": {"width": 4, "batch_norm": True}, "channels_last": True,
         "precision": "auto", "tta": False, "eval_every": 1, "dataset": "fashion-mnist", "epochs": 5, "batch_size": 128, "lr": 0.05},
        {"optimizer": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
         "warmup_epochs": 0.0, "label_smoothing": 0.0, "resize": 224, "augment": False, "normalize": "none",
         "init": "default", "model_options": {"width": 4}, "channels_last": False, "precision": "fp32", "tta": False, "eval_every": 1,
         "dataset": "fashion-mnist", "epochs": 10, "batch_size": 128, "lr": 0.05},
    ),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_resolve_to_the_snapshot(name):
    info = model_info(name)
    for got, expected in zip((info.fast_recipe, info.reference_recipe), RECIPES[name]):
        assert got == expected
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}


def test_every_snapshot_model_is_registered():
    assert set(RECIPES) <= set(list_models())
