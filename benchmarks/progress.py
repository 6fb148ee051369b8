"""Progress display: a tqdm bar on a terminal, one line per epoch otherwise.

Off a terminal (a Slurm log, a pipe) the display is what a log reader wants:
the engine's one-line summary per epoch (train and test metrics), and, only
when an epoch is long, a step line at most every ``log_every_s`` seconds. Both
modes read the loss from the device only every ``interval`` steps, so the
display costs at most one host synchronisation per interval, not one per step.
"""

from __future__ import annotations

import sys
import time

import torch
from tqdm import tqdm


def resolve_mode(mode: str) -> str:
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return mode


class Progress:
    def __init__(self, mode: str, epochs: int, steps_per_epoch: int, log_every_s: float = 60.0) -> None:
        self.mode = resolve_mode(mode)
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.interval = max(1, steps_per_epoch // 10)
        self.log_every_s = log_every_s
        self.bar: tqdm | None = None

    def start_epoch(self, epoch: int, first_step: int) -> None:
        self.epoch, self.tic, self.first_step = epoch, time.perf_counter(), first_step
        self.last_line = self.tic
        if self.mode == "bar":
            self.bar = tqdm(total=self.steps_per_epoch, initial=first_step, leave=False,
                            desc=f"epoch {epoch + 1}/{self.epochs}", dynamic_ncols=True)

    def step(self, step_in_epoch: int, loss: torch.Tensor, lr: float) -> None:
        """After step ``step_in_epoch`` (1-based) of the epoch."""
        due = step_in_epoch % self.interval == 0 or step_in_epoch == self.steps_per_epoch
        if self.bar is not None:
            self.bar.update(1)
            if due:
                self.bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.4g}", refresh=False)
        elif self.mode == "log" and due and time.perf_counter() - self.last_line >= self.log_every_s:
            self.last_line = time.perf_counter()
            rate = (step_in_epoch - self.first_step) / max(self.last_line - self.tic, 1e-9)
            print(f"epoch {self.epoch + 1}/{self.epochs} step {step_in_epoch}/{self.steps_per_epoch}"
                  f" loss {loss.item():.4f} lr {lr:.4g} {rate:.1f} it/s", flush=True)

    def end_epoch(self, summary: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.mode != "none":
            print(summary, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
