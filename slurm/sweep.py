"""Cells of an experiment and their states, read from run directories.

States (shared with ``results``; see docs/CONTRACTS.md):

- ``done``: result.json exists.
- ``running`` / ``pending``: a live job holds the cell: the scheduler lists its
  job (running, or waiting in the queue), or a local ``.running`` lock names a
  live process.
- ``failed``: error.json exists, no result.json, no live job.
- ``stopped``: the cell started (config.json or checkpoint.pt) but nothing runs it.
- ``not launched``: nothing on disk.

The sweep keeps its own files beside the run directories, under
``<runs_dir>/<experiment>/.sweep/``: ``jobs.jsonl`` (which job was submitted for
which cell), submitit's folder, and the local runner's logs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import typing
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from benchmarks import experiments
from benchmarks.config import TrainConfig, cell_fields, cell_id, run_dir
# The reading side of the lock, the ledger and the queue, shared with results/.
from benchmarks.runstate import LEDGER_NAME, LOCK_NAME, live_lock, pid_alive, read_jobs, read_lock, scheduler_queue

DONE, RUNNING, PENDING, FAILED, STOPPED, NOT_LAUNCHED = (
    "done", "running", "pending", "failed", "stopped", "not launched",
)
STATES = (DONE, RUNNING, PENDING, FAILED, STOPPED, NOT_LAUNCHED)
ACTIVE = (RUNNING, PENDING)


class SweepError(ValueError):
    """Bad input to a sweep command; the message says what to change."""


# --------------------------------------------------------------------------- experiments


def get_experiment(name: str, module: str | None = None):
    """The experiment ``name`` of ``module`` (``benchmarks.experiments.get``),
    its errors as SweepErrors."""
    try:
        return experiments.get(name, module)
    except ValueError as exc:
        raise SweepError(str(exc)) from exc


def relocate(cells: Iterable[TrainConfig], runs_dir: str | None, data_dir: str | None) -> list[TrainConfig]:
    """The cells with absolute run and data folders (overridden where given).

    Absolute, because jobs and local children may start in another directory;
    neither folder is a cell field, so cell ids do not change.
    """
    out = []
    for cfg in cells:
        out.append(
            dataclasses.replace(
                cfg,
                runs_dir=str(Path(runs_dir or cfg.runs_dir).resolve()),
                data_dir=str(Path(data_dir or cfg.data_dir).resolve()),
            )
        )
    return out


# --------------------------------------------------------------------------- filters


def _field_types() -> dict[str, Any]:
    try:
        return typing.get_type_hints(TrainConfig)
    except Exception:  # unresolvable annotation: fall back to the declared objects
        return {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def parse_value(field: str, text: str, kind: Any) -> Any:
    """``text`` parsed as the field's type (``float | None`` accepts ``none``)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    optional = type(None) in typing.get_args(kind)
    if optional and text.lower() in ("none", "null", ""):
        return None
    if typing.get_origin(kind) is typing.Literal:
        return text
    if args and typing.get_origin(kind) is not typing.Literal and optional:
        kind = args[0]
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind in (int, float):
            return kind(text)
    except ValueError:
        raise SweepError(
            f"--only {field}={text}: {text!r} is not a valid {getattr(kind, '__name__', kind)}"
        ) from None
    return text


def parse_filters(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["optimizer=sam", "seed=0"]`` -> ``{"optimizer": ["sam"], "seed": [0]}``.

    The same key given twice matches either value; different keys must all match.
    """
    types = _field_types()
    filters: dict[str, list[Any]] = defaultdict(list)
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise SweepError(f"--only {spec!r}: expected KEY=VALUE, e.g. --only optimizer=vasso")
        if key not in types:
            raise SweepError(
                f"--only {spec}: unknown field {key!r}; valid fields: {', '.join(sorted(types))}"
            )
        filters[key].append(parse_value(key, text.strip(), types[key]))
    return dict(filters)


def apply_filters(cells: Sequence[TrainConfig], filters: Mapping[str, list[Any]]) -> list[TrainConfig]:
    kept = [c for c in cells if all(getattr(c, k) in vs for k, vs in filters.items())]
    if filters and not kept:
        shown = " ".join(f"--only {k}={v}" for k, vs in filters.items() for v in vs)
        raise SweepError(f"{shown}: no cell of this experiment matches; `plan` lists the cells")
    return kept


def varying_fields(cells: Sequence[TrainConfig]) -> list[str]:
    """The cell fields whose values differ between cells, in declaration order."""
    rows = [cell_fields(c) for c in cells]
    if not rows:
        return []
    return [k for k in rows[0] if len({json.dumps(r.get(k), sort_keys=True) for r in rows}) > 1]


def shared_settings(cells: Sequence[TrainConfig]) -> dict[str, Any]:
    """The cell fields every cell holds at one value (the experiment's recipe), in
    declaration order; ``experiment`` (the folder name) left out."""
    if not cells:
        return {}
    varying = set(varying_fields(cells))
    return {k: v for k, v in cell_fields(cells[0]).items() if k not in varying and k != "experiment"}


# --------------------------------------------------------------------------- job ledger


def sweep_dir(cells: Sequence[TrainConfig], experiment: str) -> Path:
    root = Path(cells[0].runs_dir) if cells else Path(os.environ.get("VASSO_RUNS", "runs"))
    return root / experiment / ".sweep"


def record_jobs(folder: Path, executor: str, submitted: Mapping[str, str]) -> None:
    """Append ``{cell id: job id}`` to the ledger."""
    folder.mkdir(parents=True, exist_ok=True)
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(folder / LEDGER_NAME, "a") as f:
        for cell, job in submitted.items():
            f.write(json.dumps({"cell": cell, "job_id": job, "executor": executor, "time": now}) + "\n")


# --------------------------------------------------------------------------- local locks


def write_lock(directory: Path, pid: int, state: str) -> None:
    """Mark a cell as held by a local process (``state``: running or pending)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{LOCK_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "state": state}))
    os.replace(tmp, directory / LOCK_NAME)


def remove_lock(directory: Path, pid: int | None = None) -> None:
    """Remove the lock (only if ``pid`` still owns it, when given)."""
    lock = directory / LOCK_NAME
    if pid is not None:
        held = read_lock(directory)
        if held is None or held.get("pid") != pid:
            return
    lock.unlink(missing_ok=True)


# --------------------------------------------------------------------------- states


@dataclass(frozen=True)
class CellStatus:
    cfg: TrainConfig
    cell: str  # the cell id
    path: Path  # the run directory
    state: str
    job: str | None = None  # the scheduler's job id or the local pid


def cell_states(cells: Sequence[TrainConfig], experiment: str, queue: dict[str, str] | None = None) -> list[CellStatus]:
    """The state of every cell (``queue``: from :func:`scheduler_queue`)."""
    jobs = read_jobs(sweep_dir(cells, experiment)) if cells else {}
    out = []
    for cfg in cells:
        cid, path = cell_id(cfg), run_dir(cfg)
        state, job = _state(path, jobs.get(cid), queue)
        out.append(CellStatus(cfg, cid, path, state, job))
    return out


def _state(path: Path, job: str | None, queue: dict[str, str] | None) -> tuple[str, str | None]:
    if (path / "result.json").exists():
        return DONE, None
    lock = live_lock(path)
    if lock is not None:
        return (PENDING if lock.get("state") == PENDING else RUNNING), str(lock.get("pid"))
    if job is not None and queue is not None and job in queue:
        scheduled = queue[job].upper()
        return (RUNNING if scheduled in ("RUNNING", "COMPLETING") else PENDING), job
    if (path / "error.json").exists():
        return FAILED, job
    if (path / "config.json").exists() or (path / "checkpoint.pt").exists():
        return STOPPED, job
    return NOT_LAUNCHED, job


def count_states(statuses: Iterable[CellStatus]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for s in statuses:
        counts[s.state] += 1
    return counts
