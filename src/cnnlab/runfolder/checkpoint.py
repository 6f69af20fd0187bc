"""The checkpoint layout: plain dicts of tensors and plain types, written atomically, loaded with weights_only
and checked key by key before anything uses them.

A checkpoint holds everything needed to continue a run exactly: model, optimizer, scheduler and
grad-scaler state, the position (epoch, step), the partial-epoch metric sums, every RNG state and the
resolved config. The trainer's `TrainState` (training/state.py) writes and restores it.

best.pt is weights only (`"resumable": False`: no optimizer, scheduler, scaler, RNG or partial sums): a run
continues from last.pt alone, and the optimizer's state would double or triple the file (SGD momentum, Adam).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.files import UnsafeFileError, open_regular, write_bytes_atomic
from cnnlab.runfolder.config import TrainConfig, check_types

CHECKPOINT_VERSION = 1
# The largest zoo model (VGG-11 at 224 pixels) with its SGD momentum is about 1 GB; a file far beyond is not ours.
MAX_CHECKPOINT_BYTES = 4 * 2**30


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over `path`.

    A kill at any moment leaves either the old or the new file, never a torn one.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model under DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict without DDP's `module.` or compile's `_orig_mod.` prefixes."""
    return unwrap_model(model).state_dict()


def run_dir_of(checkpoint_file: str | Path) -> Path:
    """The run folder a checkpoint file belongs to: the folder above its checkpoints/, else the one it is in.

    Derived from where the file *is*, so a moved or copied run stays self-contained; the `run_dir`
    stored inside a checkpoint is informational only and never decides where anything is written.
    """
    file = Path(checkpoint_file).absolute()
    return file.parent.parent if file.parent.name == "checkpoints" else file.parent


def find_checkpoint(path: str | Path, name: str = "last.pt") -> Path:
    """A checkpoint file from a run folder (its checkpoints/`name`) or a .pt path."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / name
        if candidate.exists() or candidate.is_symlink():  # anything but a regular file is refused when opened
            return candidate
        other = "best.pt" if name == "last.pt" else "last.pt"
        if (path / "checkpoints" / other).is_file():
            return path / "checkpoints" / other
        raise CnnlabError(f"no checkpoint in {str(path)!r} (looked for checkpoints/{name}); is it a cnnlab run folder?")
    if path.is_file():
        return path
    raise CnnlabError(f"no such run folder or checkpoint: {str(path)!r}")


def load_checkpoint(path: str | Path, name: str = "last.pt") -> dict[str, Any]:
    """Load a checkpoint safely (weights_only=True: a file from elsewhere cannot run code) and check its layout."""
    import pickle
    import re

    file = find_checkpoint(path, name)
    # Inside a run folder the file must be a regular file of the run (not a link out, not a FIFO that would
    # block); a checkpoint file named directly is the caller's choice, and may be reached through a link.
    in_run = Path(path).is_dir()
    try:
        fd = open_regular(
            file if in_run else os.path.realpath(file), within=path if in_run else None, limit=MAX_CHECKPOINT_BYTES
        )
    except UnsafeFileError as err:
        raise CnnlabError(f"cannot load checkpoint: {err}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            checkpoint = torch.load(f, map_location="cpu", weights_only=True)
    except PermissionError:
        raise  # the environment, not the file: the CLI says so and exits 1
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False; for a file from elsewhere that would let it run code.
        # Only the reason is passed on: torch's text suggests weights_only=False, which would let the file run code.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found:
            raise CnnlabError(
                f"{str(file)!r} is not a cnnlab checkpoint: it holds Python objects ({found.group(1)}) "
                "that could run code, so cnnlab will not load it"
            ) from None
        reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(err))
        why = reason.group(1).strip() if reason else _first_line(err)
        if "weights_only" in why:
            why = "not a PyTorch checkpoint"
        raise CnnlabError(f"cannot load checkpoint {str(file)!r}: not a file torch can read safely ({why})") from None
    except Exception as err:  # noqa: BLE001 - unreadable/corrupt/unsafe files all become one line
        raise CnnlabError(f"cannot load checkpoint {str(file)!r}: {_first_line(err)}") from None
    validate_checkpoint(checkpoint, file)
    checkpoint["path"] = str(file)
    return checkpoint


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _checkpoint_problem(obj: Any) -> str | None:
    """What is wrong with `obj` as a checkpoint the trainer wrote (see `TrainState.to_checkpoint`), or None."""
    if not isinstance(obj, dict):
        return f"it holds a {type(obj).__name__}, not a dict"
    version = obj.get("version")
    if _is_int(version) and version > CHECKPOINT_VERSION:
        return None  # a newer layout, not ours to judge: validate_checkpoint says to upgrade
    resumable = obj.get("resumable", True)
    if not isinstance(resumable, bool):
        return f"resumable must be true or false, got {resumable!r:.40}"
    missing = [key for key in _REQUIRED_KEYS if key not in obj and (resumable or key not in TRAINING_STATE_KEYS)]
    if missing:
        return f"no {', '.join(missing)} inside"
    if not _is_int(version) or version < 0:
        return f"version must be a non-negative integer, got {version!r:.40}"
    model = obj["model"]
    if not isinstance(model, dict) or not model:
        return "model must be a non-empty dict of tensors"
    for key, value in model.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            return f"model entry {key!r:.60} is a {type(value).__name__}, not a tensor"
    for key in ("epoch", "step"):
        if not _is_int(obj[key]) or obj[key] < 0:
            return f"{key} must be a non-negative integer, got {obj[key]!r:.40}"
    if not _is_number(obj["best_acc"]):
        return f"best_acc must be a finite number, got {obj['best_acc']!r:.40}"
    best_epoch = obj.get("best_epoch")
    if best_epoch is not None and not (_is_int(best_epoch) and best_epoch >= 0):
        return f"best_epoch must be a non-negative integer or None, got {best_epoch!r:.40}"
    problem = _training_state_problem(obj) if resumable else None
    if problem:
        return problem
    if "run_dir" in obj and not isinstance(obj["run_dir"], str):
        return f"run_dir must be a string, got {type(obj['run_dir']).__name__}"
    config = obj["config"]
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        return "config must be a dict of training options"
    unknown = sorted(set(config) - set(TrainConfig.field_names()))
    if unknown:
        return f"config has unknown option {unknown[0]!r:.60}"
    try:
        check_types(config)
    except CnnlabError as err:
        return f"config: {err}"
    for key in ("num_classes", "in_channels"):
        if not _is_int(obj[key]) or not 0 < obj[key] <= _MAX_COUNT:
            return f"{key} must be a positive integer, got {obj[key]!r:.40}"
    classes = obj["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        return "classes must be a list of class names"
    if len(classes) != obj["num_classes"]:
        return f"num_classes is {obj['num_classes']} but {len(classes)} classes are named"
    return None


def _training_state_problem(obj: dict[str, Any]) -> str | None:
    """What is wrong with the state a resume restores (optimizer, scheduler, scaler, partial sums, RNG), or None."""
    optimizer = obj["optimizer"]
    if not (
        isinstance(optimizer, dict)
        and isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), list)
        and all(isinstance(group, dict) for group in optimizer["param_groups"])
    ):
        return "optimizer must be an optimizer's state_dict (state and param_groups)"
    for key in ("scheduler", "scaler"):
        if not isinstance(obj[key], dict):
            return f"{key} must be a dict, got {type(obj[key]).__name__}"
    sums = obj.get("epoch_sums")
    if sums is not None and not (
        isinstance(sums, dict)
        and set(sums) >= _EPOCH_SUMS
        and all(_is_number(v) or isinstance(v, torch.Tensor) and v.numel() == 1 for v in sums.values())
    ):
        return f"epoch_sums must be None or numbers for {', '.join(sorted(_EPOCH_SUMS))}"
    rng = obj["rng"]
    if not (
        isinstance(rng, dict)
        and isinstance(rng.get("torch"), torch.Tensor)
        and rng["torch"].dtype == torch.uint8
        and all(isinstance(t, torch.Tensor) for t in rng.get("cuda", []))
    ):
        return "rng must hold torch's generator state (a uint8 tensor)"
    return None


# What `TrainState.to_checkpoint` always writes (best_epoch, epoch_sums and run_dir are checked when present).
_REQUIRED_KEYS = (
    "version",
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "epoch",
    "step",
    "best_acc",
    "rng",
    "config",
    "num_classes",
    "in_channels",
    "classes",
)
# What a resume restores, and a weights-only checkpoint (best.pt, "resumable": False) leaves out.
TRAINING_STATE_KEYS = ("optimizer", "scheduler", "scaler", "rng")
_EPOCH_SUMS = {"loss_sum", "correct", "seen", "seconds"}
_MAX_COUNT = 100_000  # classes or channels: far above any dataset cnnlab trains on


def validate_checkpoint(obj: Any, file: str | Path) -> dict[str, Any]:
    """`obj` if it has the layout cnnlab writes, else a one-line CnnlabError naming `file` and what is wrong.

    A file that loads with weights_only can still hold anything made of tensors and
    plain types; checking here turns a wrong one into a clear message instead of a
    KeyError or TypeError deep inside training or evaluation.
    """
    problem = _checkpoint_problem(obj)
    if problem:
        raise CnnlabError(f"{str(file)!r} is not a cnnlab checkpoint: {problem}")
    if obj["version"] > CHECKPOINT_VERSION:
        raise CnnlabError(
            f"{str(file)!r} was written by a newer cnnlab (checkpoint version {obj['version']}); upgrade cnnlab"
        )
    return obj
