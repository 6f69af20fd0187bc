"""Progress display: a tqdm bar per epoch on a terminal, nothing extra in logs.

The epoch summary line is printed by the loop either way, so a log file gets
exactly one line per epoch.
"""
from __future__ import annotations

import sys
import time

# Reading the loss from the device is a sync: refresh the bar's numbers only this often.
REFRESH_EVERY = 20


class Progress:
    def __init__(self, enabled: bool, steps_per_epoch: int, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.steps_per_epoch = steps_per_epoch
        self.bar = None

    def start_epoch(self, epoch: int, epochs: int, start_step: int) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.steps_per_epoch, initial=start_step, desc=f"epoch {epoch + 1}/{epochs}",
            file=self.stream, leave=False, dynamic_ncols=True, unit="step",
        )
        self.start = time.perf_counter()
        self.start_seen = None

    def step(self, step: int, loss, correct, seen) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if step % REFRESH_EVERY == 0 or step + 1 == self.steps_per_epoch:
            seen_now = int(seen)
            if self.start_seen is None:
                self.start_seen, self.start = seen_now, time.perf_counter()
            rate = (seen_now - self.start_seen) / max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix(loss=f"{float(loss):.4f}", acc=f"{int(correct) / max(seen_now, 1):.2%}", img_s=f"{rate:,.0f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
