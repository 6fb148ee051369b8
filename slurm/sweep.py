"""Cells of an experiment and their states, read from run directories.

A cell's state (done, running, pending, failed, stopped, not launched, invalid) comes
from :func:`benchmarks.runstate.classify`, the one classifier ``results`` calls too;
docs/sweeps.md explains each. The sweep keeps its own files beside the run
directories, under ``<runs_dir>/<experiment>/.sweep/``: ``jobs.jsonl`` (which job
was submitted for which cell), ``launch.lock`` (held by a launch while it decides
and submits), submitit's folder, and the local runner's logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import typing
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from benchmarks import experiments
from benchmarks import rundir
from benchmarks.config import ConfigError, TrainConfig, cell_fields, cell_id, run_dir
# The one classifier of a cell's state, shared with results/.
from benchmarks.runstate import (ACTIVE, DONE, FAILED, INVALID, NOT_LAUNCHED, PENDING, RUNNING,
                                 STATES, STOPPED, CellState, Holders, classify, read_jobs,
                                 scheduler_queue)


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


def _held_values(cells: Sequence[TrainConfig]) -> dict[str, dict[str, Any]]:
    """Per cell field, in declaration order: its values (by JSON form) over the cells
    that hold it. A field only some methods read (rho: not SGD's) is held by theirs."""
    held: dict[str, dict[str, Any]] = {}
    for cell in cells:
        for k, v in cell_fields(cell).items():
            held.setdefault(k, {})[json.dumps(v, sort_keys=True)] = v
    return {f.name: held[f.name] for f in dataclasses.fields(TrainConfig) if f.name in held}


def varying_fields(cells: Sequence[TrainConfig]) -> list[str]:
    """The cell fields whose values differ between the cells that hold them, in
    declaration order."""
    return [k for k, values in _held_values(cells).items() if len(values) > 1]


def shared_settings(cells: Sequence[TrainConfig]) -> dict[str, Any]:
    """The cell fields every cell that holds them holds at one value (the experiment's
    recipe), in declaration order; ``experiment`` (the folder name) left out."""
    return {k: next(iter(values.values())) for k, values in _held_values(cells).items()
            if len(values) == 1 and k != "experiment"}


# --------------------------------------------------------------------------- job ledger


def sweep_dir(cells: Sequence[TrainConfig], experiment: str) -> Path:
    root = Path(cells[0].runs_dir) if cells else Path(os.environ.get("VASSO_RUNS", "runs"))
    return root / experiment / rundir.SWEEP


def record_jobs(folder: Path, executor: str, submitted: Mapping[str, str]) -> None:
    """Append ``{cell id: job id}`` to the ledger."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    with rundir.writing(folder / rundir.LEDGER):
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / rundir.LEDGER, "a") as f:
            for cell, job in submitted.items():
                f.write(json.dumps({"cell": cell, "job_id": job, "executor": executor, "time": now}) + "\n")


@contextlib.contextmanager
def launch_lock(folder: Path, wait_s: float = 120.0, poll_s: float = 0.5):
    """Hold ``<sweep folder>/launch.lock`` while a launch decides and submits, so that
    concurrent launches never submit a cell twice: a second launch waits for the first
    (at most ``wait_s``), then sees its cells as pending. Yields a function that
    releases the lock early (once the cells are claimed, before a foreground run).
    An unwritable folder, or a lock held longer than ``wait_s``, is a SweepError."""
    try:
        rundir.check_writable(folder, "the sweep folder")
    except ConfigError as exc:
        raise SweepError(str(exc)) from None
    path, content = folder / rundir.LAUNCH_LOCK, rundir.owner(command="launch")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            rundir.acquire_lock(path, content)
            break
        except rundir.LockHeld as held:
            if time.monotonic() > deadline:
                raise SweepError(f"another launch holds this sweep: {held}. Wait for it, or "
                                 "remove that file if its process is gone") from None
            time.sleep(poll_s)
        except rundir.WriteFailed as exc:
            raise SweepError(str(exc)) from None

    def release() -> None:
        rundir.release_lock(path, content)

    try:
        yield release
    finally:
        release()


# --------------------------------------------------------------------------- local claims


def claim(directory: Path, pid: int) -> dict:
    """Mark a cell as pending under the local runner ``pid`` (the engine it starts takes
    its own lock, and the cell is then running); returns the claim, for :func:`unclaim`."""
    content = rundir.owner(pid=pid, process_start=rundir.process_start(pid))
    with rundir.writing(directory):
        directory.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_json(directory / rundir.CLAIM, content)
    return content


def unclaim(directory: Path, content: dict) -> None:
    rundir.release_lock(directory / rundir.CLAIM, content)


# --------------------------------------------------------------------------- states


@dataclass(frozen=True)
class CellStatus:
    cfg: TrainConfig
    cell: str  # the cell id
    path: Path  # the run directory
    state: str
    job: str | None = None  # the scheduler's job id or the local pid
    reason: str | None = None  # invalid: what is damaged; failed: the error
    detail: CellState | None = None


def cell_states(cells: Sequence[TrainConfig], experiment: str, queue: dict[str, str] | None = None) -> list[CellStatus]:
    """The state of every cell (``queue``: from :func:`scheduler_queue`; None: no scheduler)."""
    if not cells:
        return []
    holders = Holders.read(sweep_dir(cells, experiment).parent, queue, ask_scheduler=False)
    out = []
    for cfg in cells:
        path = run_dir(cfg)
        state = classify(path, cell_fields(cfg), holders)
        out.append(CellStatus(cfg, cell_id(cfg), path, state.state, state.job, state.reason, state))
    return out


def count_states(statuses: Iterable[CellStatus]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for s in statuses:
        counts[s.state] += 1
    return counts
