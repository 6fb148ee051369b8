"""Reading run directories, defensively.

A run directory (see ARCHITECTURE.md) is written by a training job that may be
killed at any instant, so every file in it may be absent, half-written or not
JSON at all. Everything here turns such damage into a `Problem` that names the
file and says what was wrong, and never into an exception or a number that
was not measured.

States (the same words `slurm/` uses, see docs/CONTRACTS.md):

    done      result.json holds a finite test accuracy for the chosen metric
    failed    error.json, no result.json, no live holder
    running   a live job holds the directory (a `.running` lock with a live pid,
              or a Slurm job that `squeue` lists as running: the last one of
              meta.json, or the last one the sweep's ledger submitted for the cell)
    pending   held, not started yet (the lock says "pending", or Slurm queues the job;
              a queued job has written nothing yet, so only the ledger knows it)
    stopped   started (config.json or a checkpoint), neither finished nor held
    missing   never launched (no directory, or an empty one)
    invalid   a file that should decide the state is unreadable, or config.json
              describes another cell than the one expected there
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.runstate import live_lock

METRICS = ("final", "best")
STATES = ("done", "failed", "running", "pending", "stopped", "missing", "invalid")


@dataclass(frozen=True)
class Problem:
    """Something on disk that could not be used, and why."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Run:
    """One cell's run directory as found on disk."""

    cfg: Any  # the TrainConfig this directory should hold
    path: Path
    state: str
    accuracy: float | None = None  # test accuracy (%) of the chosen metric, when done
    accuracies: dict[str, float | None] = field(default_factory=dict)  # of every metric, when done
    error: str | None = None  # one line from error.json, when failed
    problems: list[Problem] = field(default_factory=list)


def read_json(path: Path) -> tuple[Any, Problem | None]:
    """The parsed content of `path`, or (None, Problem) when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, Problem(path, f"unreadable ({exc.strerror or exc}); skipped")
    except UnicodeDecodeError:
        return None, Problem(path, "not UTF-8 text; skipped")
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, Problem(path, f"not valid JSON ({exc.msg} at line {exc.lineno}); skipped")


def _json_normal(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=str))


def config_mismatch(expected: dict[str, Any], found: Any) -> list[str]:
    """The cell fields on which config.json (`found`) differs from the expected cell.

    Both sides are compared in their JSON form, so a tuple in the config class
    equals the list that config.json holds.
    """
    if not isinstance(found, dict):
        return ["<config.json is not a JSON object>"]
    expected = _json_normal(expected)
    missing = object()
    return [
        f"{key}: expected {value!r}, found {found.get(key, '<absent>')!r}"
        for key, value in expected.items()
        if found.get(key, missing) != value
    ]


def read_accuracy(result: Any, metric: str) -> float | None:
    """result.json's test accuracy for `metric` ("final" or "best"), or None when absent or not a number."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    section = result.get(metric) if isinstance(result, dict) else None
    value = section.get("test_acc") if isinstance(section, dict) else None
    # bool is an int subclass; a JSON `true` is not an accuracy.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _lock_state(path: Path) -> str | None:
    """"running" or "pending" while a live local process holds the lock, else None."""
    lock = live_lock(path)
    if lock is None:
        return None
    return "pending" if lock.get("state") == "pending" else "running"


def _holder_state(path: Path, slurm_jobs: Mapping[str, str], submitted: str | None) -> str | None:
    """"running" or "pending" while a live local process or Slurm job holds `path`, else None.

    `submitted`: the last Slurm job the sweep's ledger submitted for this cell.
    """
    state = _lock_state(path)
    if state is not None or not slurm_jobs:
        return state
    meta, _ = read_json(path / "meta.json")
    job_ids = meta.get("slurm_job_ids") if isinstance(meta, dict) else None
    # The last id of meta.json is the job that worked on the cell most recently;
    # the ledger's may be newer still, queued and not yet started.
    candidates = [str(job_ids[-1])] if isinstance(job_ids, list) and job_ids else []
    candidates += [submitted] if submitted else []
    scheduled = [slurm_jobs[job] for job in candidates if job in slurm_jobs]
    if not scheduled:
        return None
    return "running" if any(s in ("RUNNING", "COMPLETING") for s in scheduled) else "pending"


def _error_summary(error: Any) -> str:
    if not isinstance(error, dict):
        return "error.json holds no error object"
    kind, message = error.get("type"), error.get("message")
    line = f"{kind}: {message}" if kind and message else str(kind or message or "unknown error")
    line = " ".join(line.split())  # tracebacks and messages may span lines
    return line if len(line) <= 120 else line[:117] + "..."


def _checked_config(path: Path, expected_fields: dict[str, Any]) -> Problem | None:
    """None when config.json describes the expected cell, else what is wrong with it."""
    config, problem = read_json(path / "config.json")
    if problem is not None:
        return problem
    mismatch = config_mismatch(expected_fields, config)
    if mismatch:
        return Problem(path / "config.json", "describes another cell (" + "; ".join(mismatch) + "); skipped")
    return None


def load_run(
    cfg: Any,
    path: Path,
    expected_fields: dict[str, Any],
    metric: str = "final",
    slurm_jobs: Mapping[str, str] | None = None,
    submitted: str | None = None,
) -> Run:
    """Classify the run directory `path` that should hold the cell `cfg` (fields `expected_fields`).

    The order follows `slurm/`'s: a result decides; then a live holder (a
    retried cell still has its old error.json until the engine clears it);
    then error.json; then any trace of a start. `slurm_jobs`: {job id: state}
    from `benchmarks.runstate.scheduler_queue()`; `submitted`: the cell's last
    Slurm job in the sweep's ledger (`benchmarks.runstate.read_jobs`).
    """
    if (path / "result.json").exists():
        problem = _checked_config(path, expected_fields)
        if problem is not None:
            return Run(cfg, path, "invalid", problems=[problem])
        result, problem = read_json(path / "result.json")
        if problem is not None:
            return Run(cfg, path, "invalid", problems=[problem])
        accuracy = read_accuracy(result, metric)
        if accuracy is None:
            message = f'has no finite number at ["{metric}"]["test_acc"]; skipped'
            return Run(cfg, path, "invalid", problems=[Problem(path / "result.json", message)])
        return Run(cfg, path, "done", accuracy=accuracy,
                   accuracies={m: read_accuracy(result, m) for m in METRICS})

    holder = _holder_state(path, slurm_jobs or {}, submitted)
    if holder is not None:  # a queued cell may not have written config.json yet
        return Run(cfg, path, holder)
    if not path.is_dir():
        return Run(cfg, path, "missing")
    started = (path / "config.json").exists()
    if started:
        problem = _checked_config(path, expected_fields)
        if problem is not None:
            return Run(cfg, path, "invalid", problems=[problem])
    if (path / "error.json").exists():
        error, problem = read_json(path / "error.json")
        summary = _error_summary(error) if problem is None else "error.json unreadable"
        return Run(cfg, path, "failed", error=summary, problems=[problem] if problem else [])
    if started or (path / "checkpoint.pt").exists():
        return Run(cfg, path, "stopped")
    return Run(cfg, path, "missing")  # an empty directory: nothing ran there


def load_test_curve(path: Path) -> tuple[dict[int, float], list[Problem]]:
    """Test accuracy by epoch from `path`/metrics.jsonl, and what had to be skipped.

    A line that is not JSON (typically the last one, cut by a crash mid-write),
    or lacks a numeric epoch or accuracy, is reported and skipped. When an epoch
    was evaluated twice (a resumed run re-evaluating), the later line wins.
    """
    metrics = path / "metrics.jsonl"
    try:
        text = metrics.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, [Problem(metrics, "absent; no curve for this run")]
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [Problem(metrics, f"unreadable ({exc}); no curve for this run")]
    lines = text.split("\n")
    curve: dict[int, float] = {}
    problems: list[Problem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            last = number == len(lines)  # no newline after it: cut mid-write
            what = "last line truncated (crash mid-write?)" if last else f"line {number} is not valid JSON"
            problems.append(Problem(metrics, f"{what}; skipped"))
            continue
        if not isinstance(row, dict) or row.get("split") != "test":
            continue
        epoch, acc = row.get("epoch"), row.get("acc")
        numeric = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in (epoch, acc)
        )
        if not numeric:
            problems.append(Problem(metrics, f"line {number} lacks a numeric epoch or acc; skipped"))
            continue
        curve[int(epoch)] = float(acc)
    return dict(sorted(curve.items())), problems
