"""Checkpoints: plain dicts of tensors and plain types, written atomically, loaded with weights_only.

A checkpoint holds everything needed to continue a run exactly: model, optimizer,
scheduler and grad-scaler state, the position (epoch, step), the partial-epoch
metric sums, every RNG state and the resolved config.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.files import write_bytes_atomic

CHECKPOINT_VERSION = 1


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
        if candidate.is_file():
            return candidate
        other = "best.pt" if name == "last.pt" else "last.pt"
        if (path / "checkpoints" / other).is_file():
            return path / "checkpoints" / other
        raise CnnlabError(f"no checkpoint in {str(path)!r} (looked for checkpoints/{name}); is it a cnnlab run folder?")
    if path.is_file():
        return path
    raise CnnlabError(f"no such run folder or checkpoint: {str(path)!r}")


def load_checkpoint(path: str | Path, name: str = "last.pt") -> dict[str, Any]:
    """Load a checkpoint safely (weights_only=True: a file from elsewhere cannot run code)."""
    file = find_checkpoint(path, name)
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unreadable/corrupt/unsafe files all become one line
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CnnlabError(f"cannot load checkpoint {str(file)!r}: {first_line}") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise CnnlabError(f"{str(file)!r} is not a cnnlab checkpoint (no model/config inside)")
    if checkpoint.get("version", 0) > CHECKPOINT_VERSION:
        raise CnnlabError(
            f"{str(file)!r} was written by a newer cnnlab (checkpoint version {checkpoint['version']}); upgrade cnnlab"
        )
    checkpoint["path"] = str(file)
    return checkpoint


def rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# The options that shape the learning-rate schedule: a resume that changes one re-plans it.
SCHEDULE_KEYS = ("epochs", "schedule", "lr", "warmup_epochs", "step_size", "gamma")


@dataclass
class TrainState:
    """Everything a run's checkpoint holds, and the one place its layout is written and read back."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps into epoch `epoch` (0 at an epoch boundary)
    best_acc: float = -1.0
    best_epoch: int | None = None
    epoch_sums: dict[str, Any] | None = None  # partial-epoch sums of an interrupted epoch

    def to_checkpoint(self, config, spec, epoch: int, step: int, sums: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "model": model_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            # without callables, so weights_only loading accepts it
            "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if not callable(v)},
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "step": step,
            "epoch_sums": sums,
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "rng": rng_states(),
            "config": config.to_dict(),
            "run_dir": config.out,  # informational: where the run was written; never used to find it
            "num_classes": len(spec.classes),
            "in_channels": spec.channels,
            "classes": list(spec.classes),
        }

    def restore(self, checkpoint: dict[str, Any], config, steps_per_epoch: int) -> bool:
        """Continue from `checkpoint`; returns whether the lr schedule had to be re-planned for a changed config."""
        from cnnlab.training.optim import build_scheduler

        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch, self.step = checkpoint["epoch"], checkpoint["step"]
        self.best_acc, self.best_epoch = checkpoint["best_acc"], checkpoint["best_epoch"]
        self.epoch_sums = checkpoint.get("epoch_sums")
        set_rng_states(checkpoint["rng"])
        if all(checkpoint["config"].get(key) == getattr(config, key) for key in SCHEDULE_KEYS):
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            return False
        # e.g. --epochs raised: plan anew for the new length, standing at the step reached (every schedule here is
        # closed-form in the step). The loaded optimizer state carries the old plan's lr keys: the new plan sets its own.
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr
            for key in ("initial_lr", "max_lr", "min_lr"):
                group.pop(key, None)
        self.scheduler = build_scheduler(self.optimizer, config, steps_per_epoch)
        self.scheduler.last_epoch = self.epoch * steps_per_epoch + self.step - 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": no step is skipped here
            self.scheduler.step()
        return True
