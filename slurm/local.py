"""The local executor: cells as child processes, N at a time, on this machine.

``launch --executor local`` starts this module detached (``python -m
slurm.local SPEC --claimed-fd N``) and returns once the runner has claimed
every cell; ``--wait`` runs the same loop in the foreground. Each cell's run
directory holds the runner's ``.claim`` (host, pid) until its engine has
exited, so ``plan`` shows it as pending and a second ``launch`` leaves it
alone; the engine itself holds the cell's ``.lock`` while it trains (the cell
is then running). A claim whose process is gone is stale. Only the runner
writes claims: the launcher waits on a pipe for its claimed line.
On SIGTERM or Ctrl-C the runner sends SIGTERM to its children, which
checkpoint and exit 75; the cells are then ``stopped`` and resume on the next
launch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .job import EXIT_BUSY, EXIT_DONE, EXIT_FAILED, EXIT_PREEMPTED, engine_command, engine_env, record_crash
from .sweep import claim as claim_cell
from .sweep import unclaim


@dataclass(frozen=True)
class LocalCell:
    cell: str  # the cell id
    label: str  # what varies, for progress lines
    argv: list[str]  # the engine's arguments
    run_dir: str
    threads: int = 1  # the engine's --threads (also its OMP_NUM_THREADS)


def write_spec(path: Path, cells: Sequence[LocalCell], parallel: int, log_dir: Path) -> None:
    spec = {"parallel": parallel, "log_dir": str(log_dir), "cells": [c.__dict__ for c in cells]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=1))


def read_spec(path: Path) -> tuple[list[LocalCell], int, Path]:
    spec = json.loads(Path(path).read_text())
    return [LocalCell(**c) for c in spec["cells"]], int(spec["parallel"]), Path(spec["log_dir"])


# What the detached runner writes to the launcher once its cells are claimed.
CLAIMED = b"claimed\n"


def claim(cells: Sequence[LocalCell], owner_pid: int) -> dict[str, dict]:
    """Mark every cell as pending under ``owner_pid`` (the runner); the claims by cell id."""
    return {c.cell: claim_cell(Path(c.run_dir), owner_pid) for c in cells}


def run_cells(
    cells: Sequence[LocalCell],
    parallel: int,
    log_dir: Path,
    say: Callable[[str], None] = print,
    on_claimed: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Run the cells, ``parallel`` at a time; ``{cell id: exit code}``.

    Every cell is claimed (pending, under this process) before the first one
    starts, and ``on_claimed`` is called then. Children's output goes to
    ``log_dir/<cell id>.log`` (appended across restarts).
    """
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    log_dir.mkdir(parents=True, exist_ok=True)
    claims = claim(cells, os.getpid())
    if on_claimed is not None:
        on_claimed()
    queue = list(cells)
    running: dict[str, tuple[LocalCell, subprocess.Popen, float]] = {}
    codes: dict[str, int] = {}
    offsets: dict[str, int] = {}  # where each cell's output begins in its log
    stop = _StopFlag()
    total = len(cells)
    try:
        while (queue or running) and not stop.requested:
            while queue and len(running) < parallel and not stop.requested:
                c = queue.pop(0)
                with open(log_dir / f"{c.cell}.log", "ab") as log:
                    offsets[c.cell] = log.tell()  # the log is appended across restarts
                    proc = subprocess.Popen(
                        engine_command(c.argv),
                        env=engine_env(threads=c.threads),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        # Own session: a Ctrl-C meant for this runner must not
                        # reach the engines; the runner stops them with SIGTERM.
                        start_new_session=True,
                    )
                running[c.cell] = (c, proc, time.monotonic())
                say(f"[{len(codes)}/{total}] started {c.cell} ({c.label})")
            for cid, (c, proc, started) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[cid]
                codes[cid] = rc
                if rc not in (EXIT_DONE, EXIT_PREEMPTED, EXIT_BUSY):
                    log = log_dir / f"{cid}.log"
                    record_crash(c.run_dir, rc, str(log), log, offsets[cid])
                unclaim(Path(c.run_dir), claims[cid])
                say(
                    f"[{len(codes)}/{total}] {_outcome(rc)} {c.cell} ({c.label}) "
                    f"in {time.monotonic() - started:.0f} s"
                    + ("" if rc in (EXIT_DONE, EXIT_PREEMPTED) else f"; log: {log_dir / (cid + '.log')}")
                )
            time.sleep(0.2)
    finally:
        stop.restore()
        for c, proc, _ in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for c, proc, _ in running.values():
            try:
                codes[c.cell] = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[c.cell] = proc.wait()
            unclaim(Path(c.run_dir), claims[c.cell])
        for c in queue:
            unclaim(Path(c.run_dir), claims[c.cell])
    if stop.requested:
        say(f"stopped by signal: {len(running)} cell(s) checkpointed, {len(queue)} not started")
    return codes


def _outcome(rc: int) -> str:
    return {EXIT_DONE: "done", EXIT_FAILED: "FAILED", EXIT_PREEMPTED: "stopped",
            EXIT_BUSY: "busy (another engine holds it)"}.get(rc, f"exit {rc}")


class _StopFlag:
    """SIGTERM / SIGINT ask the loop to stop (children are then checkpointed)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def tell_claimed(fd: int) -> None:
    """Write the claimed line to ``fd`` and close it (the launcher waits for it)."""
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(CLAIMED)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slurm.local", description="Run the cells of SPEC.json.")
    parser.add_argument("spec", type=Path)
    parser.add_argument("--claimed-fd", type=int, default=None,
                        help="write a line to this file descriptor once every cell is claimed")
    args = parser.parse_args(argv)
    cells, parallel, log_dir = read_spec(args.spec)
    on_claimed = None if args.claimed_fd is None else (lambda: tell_claimed(args.claimed_fd))
    codes = run_cells(cells, parallel, log_dir, say=lambda m: print(m, flush=True), on_claimed=on_claimed)
    return 0 if all(rc in (EXIT_DONE,) for rc in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
