"""Live monitoring: TensorBoard event files in the run directory (`make tensorboard`).

The engine hands the monitor what it logs anyway, so watching a run costs no host
read of its own:

- :meth:`Monitor.lines`: the metric lines it appends to metrics.jsonl (one per split
  per evaluation), written as scalars ``train/loss``, ``test/acc``, ... and ``lr`` at
  the line's step;
- :meth:`Monitor.record`: device scalars of a step (a sharpness-aware step's ``||g||``
  and ``||e||``, which it computes anyway), kept on the device as they come, and
  read in one transfer by :meth:`Monitor.flush`, which the engine calls where it reads
  the host anyway (the end of an epoch).

Event files go to ``<run dir>/tensorboard/`` (``benchmarks.rundir.TENSORBOARD``), a new
file per start; a resumed run passes the step of the checkpoint it resumes from, and
TensorBoard drops what an earlier start logged after that step (``purge_step``), so a
curve never shows the steps a preempted run repeated twice.

Whether it is on: ``VASSO_TENSORBOARD=1`` on, ``0`` off; unset, on inside a Slurm job
when the ``tensorboard`` package is installed, off elsewhere. The suite runs without
the package; the tests set ``VASSO_TENSORBOARD=0`` (tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .rundir import TENSORBOARD

SWITCH = "VASSO_TENSORBOARD"
_ON, _OFF = ("1", "on", "true", "yes"), ("0", "off", "false", "no")
_STAMP = ("epoch", "step", "split", "time_s", "lr")  # a line's coordinates, not its metrics


def installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether to write event files (see the module docstring). A ValueError names a bad
    setting, or the package that `VASSO_TENSORBOARD=1` needs."""
    setting = environ.get(SWITCH, "").strip().lower()
    if setting in _OFF:
        return False
    if setting in _ON:
        if not installed():
            raise ValueError(f"{SWITCH}={environ[SWITCH]} needs the tensorboard package: "
                             "pip install tensorboard (requirements.txt), or unset it")
        return True
    if setting:
        raise ValueError(f"{SWITCH}={environ[SWITCH]!r}: expected 1 (on) or 0 (off), or unset "
                         "(on in a Slurm job when tensorboard is installed)")
    return "SLURM_JOB_ID" in environ and installed()


class Monitor:
    """Scalars of one run into ``<run dir>/tensorboard/``; every method is a no-op when off."""

    def __init__(self, run_dir: Path | None, resumed_at: int = 0) -> None:
        """`run_dir` None: off. `resumed_at`: the step of the checkpoint this start resumes
        from (0: a fresh run); what earlier starts logged after it is dropped."""
        self.writer = None
        self._pending: list[tuple[int, list[str], torch.Tensor]] = []
        self._lr_step = -1  # the step whose learning rate was written last
        if run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

            self.writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD),
                                        purge_step=resumed_at + 1 if resumed_at > 0 else None)

    @classmethod
    def open(cls, run_dir: Path, resumed_at: int = 0, environ: Mapping[str, str] = os.environ) -> Monitor:
        """On or off as `VASSO_TENSORBOARD` and the environment say (:func:`wanted`)."""
        return cls(run_dir if wanted(environ) else None, resumed_at)

    @property
    def on(self) -> bool:
        return self.writer is not None

    def lines(self, lines: Iterable[Mapping[str, Any]]) -> None:
        """Metric lines as the engine appends them to metrics.jsonl: every numeric metric
        as ``<split>/<name>`` at the line's step, and the learning rate as ``lr``."""
        if self.writer is None:
            return
        for line in lines:
            step = int(line["step"])
            for name, value in line.items():
                if name not in _STAMP and _finite_number(value):
                    self.writer.add_scalar(f"{line['split']}/{name}", value, step)
            if _finite_number(line.get("lr")) and step != self._lr_step:  # every split's line has it
                self.writer.add_scalar("lr", line["lr"], step)
                self._lr_step = step
        self.writer.flush()

    def record(self, step: int, **scalars: torch.Tensor) -> None:
        """Device scalars of `step` (``grad_norm=..., perturbation_norm=...``), kept on the
        device until :meth:`flush`: no host read here. Stacked into a new tensor, so a
        buffer that a CUDA graph overwrites at its next replay may be passed."""
        if self.writer is None or not scalars:
            return
        values = torch.stack([value.detach().reshape(()).float() for value in scalars.values()])
        self._pending.append((step, list(scalars), values))

    def flush(self) -> None:
        """Write the recorded step scalars with one host read (call it where the engine reads
        the host anyway, e.g. after an epoch's sums)."""
        if self.writer is None or not self._pending:
            return
        values = iter(torch.cat([v for _, _, v in self._pending]).tolist())
        for step, names, _ in self._pending:
            for name, value in zip(names, values):
                self.writer.add_scalar(f"step/{name}", value, step)
        self._pending.clear()
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.flush()
            self.writer.close()
            self.writer = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
