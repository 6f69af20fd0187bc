"""What a training holds between steps (model, optimizer, scheduler, scaler, position, best so far) and how
it goes into a checkpoint and comes back out: the one writer of the layout that runfolder/checkpoint.py checks."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.runfolder.checkpoint import CHECKPOINT_VERSION, model_state
from cnnlab.runfolder.config import SCHEDULE_KEYS
from cnnlab.training.optim import build_scheduler


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


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

    def to_checkpoint(
        self, config, spec, epoch: int, step: int, sums: dict[str, Any] | None = None, resumable: bool = True
    ) -> dict[str, Any]:
        """The checkpoint dict; `resumable=False` (best.pt) keeps the weights without what a resume restores."""
        checkpoint = {
            "version": CHECKPOINT_VERSION,
            "model": model_state(self.model),
            "epoch": epoch,
            "step": step,
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "config": config.to_dict(),
            "run_dir": config.out,  # informational: where the run was written; never used to find it
            "num_classes": len(spec.classes),
            "in_channels": spec.channels,
            "classes": list(spec.classes),
        }
        if not resumable:
            return {**checkpoint, "resumable": False}
        return {
            **checkpoint,
            "optimizer": self.optimizer.state_dict(),
            # without callables, so weights_only loading accepts it
            "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if not callable(v)},
            "scaler": self.scaler.state_dict(),
            "epoch_sums": sums,
            "rng": rng_states(),
        }

    def restore(self, checkpoint: dict[str, Any], config, steps_per_epoch: int) -> bool:
        """Continue from `checkpoint`; returns whether the lr schedule had to be re-planned for a changed config."""
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CnnlabError(
                f"{checkpoint['path']!r} is not a cnnlab checkpoint: its state does not fit "
                f"{config.model} ({str(err).strip().splitlines()[0][:200]})"
            ) from None
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
