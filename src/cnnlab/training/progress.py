"""Progress within an epoch: a tqdm bar on a terminal or in a Jupyter notebook; in a log, a plain line every ~10%
of an epoch or 30 s.

The loop reads its running sums from the device only when the `StepClock` says a report is due, and
hands them here (and to steps.csv), so progress costs no extra host sync per step. The epoch summary
line is printed by the loop either way.
"""

from __future__ import annotations

import sys
from typing import Any


def redraws_lines(stream) -> bool:
    """A terminal, or a Jupyter kernel's output, which redraws a line on a carriage return as a terminal does (its
    isatty() is False: without this a notebook would get a line every ~10% of every epoch)."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return type(stream).__module__.split(".")[0] == "ipykernel"


class Progress:
    def __init__(self, enabled: bool, steps_per_epoch: int, stream=None, log=None):
        self.stream = stream or sys.stderr
        self.log = log or sys.stdout
        self.bar_enabled = enabled and redraws_lines(self.stream)
        self.lines_enabled = enabled and not self.bar_enabled
        self.steps_per_epoch = steps_per_epoch
        self.bar = None
        self.epochs = 0

    def start_epoch(self, epoch: int, epochs: int, start_step: int) -> None:
        self.epochs = epochs
        if not self.bar_enabled:
            return
        from tqdm.std import tqdm  # text, even in a notebook: tqdm's widget needs ipywidgets, an extra install

        self.bar = tqdm(
            total=self.steps_per_epoch,
            initial=start_step,
            desc=f"epoch {epoch + 1}/{epochs}",
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
            unit="step",
        )

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def report(self, live: dict[str, Any], steps_per_epoch: int) -> None:
        """The running loss, accuracy and speed of the epoch so far (a steps.csv row)."""
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{live['loss']:.4f}", acc=f"{live['accuracy']:.2%}", img_s=f"{live['images_per_s']:,.0f}"
            )
        elif self.lines_enabled and live["step"] < steps_per_epoch:  # the epoch line follows the last step
            print(
                f"epoch {live['epoch']}/{self.epochs}  step {live['step']}/{steps_per_epoch}  "
                f"loss {live['loss']:.4f} acc {live['accuracy']:.2%}  {live['images_per_s']:,.0f} img/s",
                file=self.log,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
