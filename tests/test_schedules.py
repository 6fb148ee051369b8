"""The per-step learning-rate schedules (benchmarks/training/schedule.py) against their
formulas, fairseq's inverse_sqrt among them."""

from __future__ import annotations

import math

import pytest

from benchmarks.config import TrainConfig
from benchmarks.training.schedule import lr_factor


def factors(total: int = 20, steps_per_epoch: int = 5, **kw) -> list[float]:
    cfg = TrainConfig("digits", **kw)
    factor = lr_factor(cfg, steps_per_epoch, total)
    return [factor(step) for step in range(total + 1)]


def test_linear_warms_up_then_falls_in_a_straight_line_to_zero():
    f = factors(schedule="linear", warmup_steps=4, max_steps=20)
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert f[4:] == pytest.approx([1 - k / 16 for k in range(17)], abs=1e-15)


def test_warmup_in_epochs_counts_steps():
    assert factors(schedule="linear", warmup_epochs=1.0, max_steps=20)[:5] == factors(
        schedule="linear", warmup_steps=5, max_steps=20)[:5]


def test_inverse_sqrt_is_fairseqs():
    # fairseq's InverseSquareRootSchedule.step_update(num_updates), warmup_init_lr = 0:
    # lr = num_updates * lr / warmup during the warm-up, then lr * sqrt(warmup / num_updates).
    warmup = 4
    f = factors(schedule="inverse-sqrt", warmup_steps=warmup, max_steps=20)
    fairseq = [n / warmup if n < warmup else math.sqrt(warmup) * n ** -0.5 for n in range(21)]
    assert f == pytest.approx(fairseq, rel=1e-15)
    assert f[0] == 0.0 and f[warmup] == 1.0 and f[16] == 0.5


def test_cosine_and_constant_keep_their_form():
    cos = factors(schedule="cosine", warmup_steps=4, max_steps=20)
    assert cos[4] == 1.0 and cos[12] == pytest.approx(0.5) and cos[20] == 0.0
    assert factors(schedule="constant", warmup_steps=4, max_steps=20)[4:] == [1.0] * 17
