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

from benchmarks.rundir import METRICS as METRICS_FILE
from benchmarks.runstate import DONE, FAILED, INVALID, Holders, classify

METRICS = ("final", "best")


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


def load_run(
    cfg: Any,
    path: Path,
    expected_fields: dict[str, Any],
    metric: str = "final",
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
        return Run(cfg, path, DONE, accuracy=read_accuracy(state.result, metric),
                   accuracies={m: read_accuracy(state.result, m) for m in METRICS})
    if state.state == FAILED:
        return Run(cfg, path, FAILED, error=state.reason)
    return Run(cfg, path, state.state)


def load_test_curve(path: Path) -> tuple[dict[int, float], list[Problem]]:
    """Test accuracy by epoch from `path`/metrics.jsonl, and what had to be skipped.

    A line that is not JSON (typically the last one, cut by a crash mid-write),
    or lacks a numeric epoch or accuracy, is reported and skipped. When an epoch
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
