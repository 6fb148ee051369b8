"""The state of a cell: the one classifier that ``slurm/`` and ``results/`` both call.

A cell's state comes from its run directory (:mod:`benchmarks.rundir`), from who
holds it (the engine's ``.lock``, a local runner's ``.claim``, a Slurm job), and from
the sweep's submission ledger ``<runs>/<experiment>/.sweep/jobs.jsonl`` (a queued job
has written nothing yet, so only the ledger knows it). In this order:

=============  =========================================================================
invalid        result.json exists but is unreadable, lacks a finite final or best test
               accuracy, or config.json is absent, unreadable or another cell's; or,
               without result.json, config.json is unreadable or another cell's. The
               reason names the file; ``python -m slurm repair`` moves it aside.
done           result.json (valid) and config.json of this cell
running        the engine's lock is live, or the scheduler runs the cell's job
pending        a local runner's claim is live, or the scheduler queues the cell's job
not launched   no directory, or nothing in it but stale locks and set-aside files
failed         error.json, nothing holds the cell
stopped        started (config, meta, metrics or a checkpoint), nothing holds it
=============  =========================================================================

The cell's job is the last one of meta.json (the job that worked on it most recently)
or the last one the ledger submitted for it (maybe still queued).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping

from . import rundir
from .rundir import (CLAIM, CONFIG, DAMAGED, ERROR, LEDGER, LOCK, META, RESULT, STARTED,
                     config_mismatch, lock_alive, read_lock, result_problem, try_read_json)

INVALID, DONE, RUNNING, PENDING = "invalid", "done", "running", "pending"
NOT_LAUNCHED, FAILED, STOPPED = "not launched", "failed", "stopped"
STATES = (DONE, RUNNING, PENDING, FAILED, STOPPED, NOT_LAUNCHED, INVALID)
ACTIVE = (RUNNING, PENDING)


@dataclasses.dataclass(frozen=True)
class CellState:
    state: str
    reason: str | None = None  # invalid: what is wrong; failed: a line of error.json
    job: str | None = None  # what holds (or last held) the cell: a Slurm job id or a pid
    damaged: tuple[str, ...] = ()  # invalid: the files `python -m slurm repair` moves aside
    result: dict[str, Any] | None = None  # done: result.json's content


@dataclasses.dataclass(frozen=True)
class Holders:
    """The jobs that may hold an experiment's cells, read once per listing (a sweep has
    hundreds of cells; ``squeue`` is asked once, not once per cell)."""

    ledger: Mapping[str, str] = dataclasses.field(default_factory=dict)  # cell id -> job id
    queue: Mapping[str, str] | None = None  # job id -> squeue state; None: no scheduler

    @classmethod
    def read(cls, experiment_dir: Path, queue: Mapping[str, str] | None = None,
             ask_scheduler: bool = True) -> "Holders":
        """The ledger of ``<runs>/<experiment>`` and the scheduler's queue (``queue``
        when given, else ``squeue`` when ``ask_scheduler``)."""
        if queue is None and ask_scheduler:
            queue = scheduler_queue()
        return cls(read_jobs(Path(experiment_dir) / rundir.SWEEP), queue)


def _present(path: Path) -> list[str]:
    """The entries of ``path`` that belong to a run (not locks, temporaries or set-aside files)."""
    try:
        names = [p.name for p in path.iterdir()]
    except OSError:
        return []
    return [n for n in names if n not in (LOCK, CLAIM, DAMAGED) and not rundir.is_temporary(n)]


def _holder(path: Path, cell: str, holders: Holders) -> CellState | None:
    lock = read_lock(path / LOCK)
    if lock is not None and lock_alive(lock, holders.queue):
        return CellState(RUNNING, job=str(lock.get("slurm_job_id") or lock.get("pid")))
    claim = read_lock(path / CLAIM)
    if claim is not None and lock_alive(claim, holders.queue):
        return CellState(PENDING, job=str(claim.get("pid")))
    if not holders.queue:
        return None
    meta, _ = try_read_json(path / META)
    ids = meta.get("slurm_job_ids") if isinstance(meta, dict) else None
    candidates = [str(ids[-1])] if isinstance(ids, list) and ids else []
    candidates += [holders.ledger[cell]] if cell in holders.ledger else []
    for job in reversed(candidates):  # the newest first
        if job in holders.queue:
            scheduled = holders.queue[job] in ("RUNNING", "COMPLETING")
            return CellState(RUNNING if scheduled else PENDING, job=job)
    return None


def _error_line(path: Path) -> str:
    error, problem = try_read_json(path / ERROR)
    if problem is not None:
        return f"error.json {problem}"
    if not isinstance(error, dict):
        return "error.json holds no error object"
    kind, message = error.get("type"), error.get("message")
    line = f"{kind}: {message}" if kind and message else str(kind or message or "unknown error")
    line = " ".join(line.split())  # tracebacks and messages may span lines
    return line if len(line) <= 160 else line[:157] + "..."


def _config_problem(path: Path, expected: Mapping[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    """Why config.json is not this cell's, and what to move aside; None when it is."""
    config, problem = try_read_json(path / CONFIG)
    if problem is not None:
        return f"config.json {problem}", (CONFIG,)
    mismatch = config_mismatch(dict(expected), config)
    if mismatch:  # the whole directory is another cell's run
        return ("config.json describes another cell (" + "; ".join(mismatch) + ")",
                tuple(sorted(_present(path))))
    return None


def classify(path: Path, expected: Mapping[str, Any], holders: Holders | None = None
             ) -> CellState:
    """The state of the run directory ``path``, which should hold the cell whose
    fields (``benchmarks.config.cell_fields``) are ``expected``."""
    path, holders = Path(path), holders or Holders()
    cell = path.name
    if (path / RESULT).exists():
        result, problem = try_read_json(path / RESULT)
        problem = problem or result_problem(result)
        if problem is not None:
            return CellState(INVALID, f"result.json {problem}", damaged=(RESULT,))
        if not (path / CONFIG).exists():
            return CellState(INVALID, "result.json without config.json", damaged=(RESULT,))
        config = _config_problem(path, expected)
        if config is not None:
            return CellState(INVALID, config[0], damaged=config[1])
        return CellState(DONE, result=result)
    held = _holder(path, cell, holders)
    if held is not None:  # a queued cell may not have written anything yet
        return held
    present = _present(path) if path.is_dir() else []
    if not present:
        return CellState(NOT_LAUNCHED)
    if (path / CONFIG).exists():
        config = _config_problem(path, expected)
        if config is not None:
            return CellState(INVALID, config[0], damaged=config[1])
    last_job = _last_job(path, cell, holders)
    if (path / ERROR).exists():
        return CellState(FAILED, _error_line(path), job=last_job)
    if any(name in present for name in STARTED):
        return CellState(STOPPED, job=last_job)
    return CellState(NOT_LAUNCHED)


def _last_job(path: Path, cell: str, holders: Holders) -> str | None:
    if cell in holders.ledger:
        return holders.ledger[cell]
    meta, _ = try_read_json(path / META)
    ids = meta.get("slurm_job_ids") if isinstance(meta, dict) else None
    return str(ids[-1]) if isinstance(ids, list) and ids else None


def repair(path: Path, state: CellState) -> Path | None:
    """Move the damaged files of an invalid cell aside (``damaged/<time>/``, with the
    reason); the folder they went to, or None when the cell is not invalid."""
    if state.state != INVALID or not state.damaged:
        return None
    return rundir.move_aside(Path(path), list(state.damaged), state.reason or "invalid")


# -- the sweep's ledger and the scheduler ---------------------------------------------------

def read_jobs(sweep_folder: Path) -> dict[str, str]:
    """``{cell id: job id}`` of the last Slurm submission per cell in the ledger of
    ``sweep_folder`` (``<runs>/<experiment>/.sweep``); empty when there is none.
    A line cut by a crash and local runs (their "job" is a pid) are skipped."""
    try:
        lines = (Path(sweep_folder) / LEDGER).read_text(encoding="utf-8").splitlines()
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
    as "123_4"), or None when no scheduler answers."""
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
