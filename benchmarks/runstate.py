"""Who holds a run directory: the local lock, the sweep's job ledger, the scheduler.

``slurm/`` writes these records and ``results/`` reads them, and the two must
agree on a cell's state (docs/CONTRACTS.md); neither may import the other, so
the reading side lives here, beside the run directory's own format
(:mod:`benchmarks.rundir`):

- ``<run dir>/.running``: the lock of a local process, JSON
  ``{"pid", "host", "state": "running" | "pending"}`` (a bare pid is accepted too);
- ``<runs dir>/<experiment>/.sweep/jobs.jsonl``: one JSON line per submission,
  ``{"cell", "job_id", "executor", "time"}``;
- ``squeue``: the jobs the scheduler still holds.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import os
from pathlib import Path
from typing import Any

LOCK_NAME = ".running"
LEDGER_NAME = "jobs.jsonl"


def pid_alive(pid: Any) -> bool:
    """Whether ``pid`` names a live process on this host (a zombie is not live)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # os.kill(-1 or 0, ...) would address whole process groups
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_lock(directory: Path) -> dict[str, Any] | None:
    """The lock of ``directory`` as a dict, or None when absent or unreadable."""
    try:
        text = (Path(directory) / LOCK_NAME).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if text.isdigit():
        return {"pid": int(text)}
    try:
        lock = json.loads(text)
    except ValueError:
        return None
    return lock if isinstance(lock, dict) else None


def live_lock(directory: Path) -> dict[str, Any] | None:
    """The lock when a live process holds it; a stale lock (dead pid) is None.

    A lock written on another host cannot be checked from here and counts as live.
    """
    lock = read_lock(directory)
    if lock is None:
        return None
    if lock.get("host", socket.gethostname()) != socket.gethostname():
        return lock
    return lock if pid_alive(lock.get("pid")) else None


def read_jobs(sweep_folder: Path) -> dict[str, str]:
    """``{cell id: job id}`` of the last Slurm submission per cell in the ledger of
    ``sweep_folder`` (``<runs>/<experiment>/.sweep``); empty when there is none.
    A line cut by a crash and local runs (their "job" is a pid) are skipped."""
    try:
        lines = (Path(sweep_folder) / LEDGER_NAME).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    jobs: dict[str, str] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("executor") == "slurm" and "cell" in entry:
            jobs[str(entry["cell"])] = str(entry.get("job_id"))
    return jobs


def scheduler_queue() -> dict[str, str] | None:
    """``{job id: STATE}`` of every job ``squeue`` lists (array tasks one by one,
    as "123_4"), or None when no scheduler answers. Ask once per listing, not once
    per run directory: a sweep has hundreds."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "--noheader", "--array", "--format=%i|%T"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    queue = {}
    for line in out.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        if job:
            queue[job] = state.upper()
    return queue
