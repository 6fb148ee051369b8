"""Learning-rate schedules: ``step -> multiplier of cfg.lr``, one value per optimizer step.

After a linear warm-up (``--warmup-steps``, or ``--warmup-epochs`` counted in steps):

* ``cosine``: a cosine from 1 to 0 over the remaining steps;
* ``linear``: a straight line from 1 to 0 over the remaining steps;
* ``constant``: 1;
* ``inverse-sqrt``: fairseq's ``inverse_sqrt``, reproduced to the step: during the
  warm-up the rate rises from 0 (its ``warmup_init_lr``; the first step runs at 0) by
  ``lr / warmup`` per step, then it is ``lr * sqrt(warmup / step)``, with ``step``
  the number of updates already taken, as fairseq's ``step_update(num_updates)`` sets it;
* ``cosine-epoch``: the official VaSSO code's, no warm-up. Its cosine
  ``(1 + cos(pi k / epochs)) / 2`` is set once per epoch, *after* the epoch, with the
  index k of the epoch just finished (``lr_scheduler.step(epoch)`` at the end of its
  epoch loop), and nothing sets it before the first epoch. So epoch 0 trains at the
  peak rate, epoch e >= 1 at k = e - 1: epochs 0 and 1 both at the peak, the last
  epoch above 0. ``--steps-per-epoch`` shortens the epochs, not the count of them.

The warm-up of ``cosine``, ``linear`` and ``constant`` runs step k (0-based) at
``(k + 1) / warmup``, so that no step is wasted at rate 0.
"""

from __future__ import annotations

import math
from typing import Callable

from ..config import TrainConfig


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    return cfg.warmup_steps or round(cfg.warmup_epochs * steps_per_epoch)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    """``step -> multiplier of cfg.lr`` for the step about to be taken (0-based)."""
    warmup = warmup_steps(cfg, steps_per_epoch)
    schedule = cfg.schedule

    def factor(step: int) -> float:
        if schedule == "cosine-epoch":
            finished = max(step // steps_per_epoch - 1, 0)
            return 0.5 * (1.0 + math.cos(math.pi * finished / cfg.epochs))
        if schedule == "inverse-sqrt":
            return step / warmup if step < warmup else math.sqrt(warmup / step)
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
