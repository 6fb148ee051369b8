"""Reading run directories, defensively.

A run directory (see ARCHITECTURE.md) is written by a training job that may be
killed at any instant, so every file in it may be absent, half-written or not
JSON at all. Everything here turns such damage into a `Problem` that names the
file and says what was wrong, and never into an exception or a number that
was not measured.

States: `benchmarks.runstate.classify` decides them, the same classifier `slurm/`
calls, so the table and `python -m slurm status` always agree (done, running,
pending, failed, stopped, not launched, invalid with its reason; see that module).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.rundir import ERROR, METRICS as METRICS_FILE, try_read_json
from benchmarks.runstate import DONE, FAILED, INVALID, Holders, classify

AT = ("final", "best")  # result.json's sections: the last evaluation, the best by the primary metric


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
    result: dict[str, Any] | None = None  # result.json, when done
    at: str = "final"  # the section a table shows unless told otherwise
    error: str | None = None  # one line from error.json, when failed
    error_type: str | None = None  # the exception's name from error.json, when failed
    collapse: dict[str, Any] | None = None  # result.json's record of a collapsed run, when done
    problems: list[Problem] = field(default_factory=list)

    def value(self, metric: str, at: str | None = None) -> float | None:
        """The test metric ``metric`` at ``at`` ("final" or "best"; default: ``self.at``),
        or None when the run is not done or its result.json lacks a finite number there."""
        return read_metric(self.result, metric, at or self.at)

    @property
    def collapsed(self) -> bool:
        """Training stuck at the uniform-prediction loss (benchmarks.collapse): a done run
        that recorded it, or one that --stop-on-collapse ended."""
        return self.collapse is not None or self.error_type == "Collapsed"

    @property
    def diverged(self) -> bool:
        """Failed on a non-finite training loss."""
        return self.state == "failed" and self.error_type == "NonFiniteLoss"


def read_metric(result: Any, metric: str, at: str) -> float | None:
    """result.json's test ``metric`` at ``at`` ("final" or "best"), or None when absent
    or not a finite number."""
    if at not in AT:
        raise ValueError(f"at must be one of {AT}, got {at!r}")
    section = result.get(at) if isinstance(result, dict) else None
    test = section.get("test") if isinstance(section, dict) else None
    value = test.get(metric) if isinstance(test, dict) else None
    # bool is an int subclass; a JSON `true` is not a measurement.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def load_run(
    cfg: Any,
    path: Path,
    expected_fields: dict[str, Any],
    at: str = "final",
    slurm_jobs: Mapping[str, str] | None = None,
    submitted: str | None = None,
) -> Run:
    """Classify the run directory `path` that should hold the cell `cfg` (fields `expected_fields`).

    `slurm_jobs`: {job id: state} from `benchmarks.runstate.scheduler_queue()` (None when
    no scheduler answers);
    `submitted`: the cell's last Slurm job in the sweep's ledger (`benchmarks.runstate.read_jobs`).
    """
    ledger = {path.name: submitted} if submitted else {}
    queue = None if slurm_jobs is None else dict(slurm_jobs)  # None: no scheduler answered
    state = classify(path, expected_fields, Holders(ledger, queue))
    if state.state == INVALID:
        damaged = path / state.damaged[0] if len(state.damaged) == 1 else path
        return Run(cfg, path, INVALID, problems=[Problem(damaged, f"{state.reason}; skipped")])
    if state.state == DONE:
        collapse = state.result.get("collapse")
        return Run(cfg, path, DONE, result=state.result, at=at,
                   collapse=collapse if isinstance(collapse, dict) else None)
    if state.state == FAILED:
        error, _ = try_read_json(path / ERROR)  # its type tells a diverged or collapsed run
        kind = error.get("type") if isinstance(error, dict) else None
        return Run(cfg, path, FAILED, error=state.reason,
                   error_type=kind if isinstance(kind, str) else None)
    return Run(cfg, path, state.state)


def load_test_curve(path: Path, metric: str = "acc") -> tuple[dict[float, float], list[Problem]]:
    """The test `metric` by epoch (a fraction for an evaluation inside an epoch) from
    `path`/metrics.jsonl, and what had to be skipped.

    A line that is not JSON (typically the last one, cut by a crash mid-write),
    or lacks a numeric epoch or value, is reported and skipped. When an epoch
    was evaluated twice (a resumed run re-evaluating), the later line wins.
    """
    metrics = path / METRICS_FILE
    try:
        text = metrics.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, [Problem(metrics, "absent; no curve for this run")]
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [Problem(metrics, f"unreadable ({exc}); no curve for this run")]
    lines = text.split("\n")
    curve: dict[float, float] = {}
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
        epoch, value = row.get("epoch"), row.get(metric)
        numeric = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in (epoch, value)
        )
        if not numeric:
            problems.append(Problem(metrics, f"line {number} lacks a numeric epoch or {metric}; skipped"))
            continue
        curve[epoch] = float(value)
    return dict(sorted(curve.items())), problems
