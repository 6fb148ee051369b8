"""Stop signals: SIGTERM / SIGUSR2 end the current step and checkpoint (preemption)."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopSignals:
    """While active, SIGTERM and SIGUSR2 only set ``requested``; the loop acts on it."""

    SIGNALS = ("SIGTERM", "SIGUSR2")

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # signal's own rule
            for name in self.SIGNALS:
                if hasattr(signal, name):
                    num = getattr(signal, name)
                    self._previous[num] = signal.signal(num, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for num, handler in self._previous.items():
            signal.signal(num, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers ignore SIGTERM / SIGUSR2.

    Slurm signals every process of a job step; a worker killed by it would turn a
    clean preemption into a "DataLoader worker exited unexpectedly" failure. The
    main process decides when to stop; its workers end with its loader (or, should
    it die, by their parent watchdog).
    """
    for name in StopSignals.SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
