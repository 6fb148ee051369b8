"""From an experiment's cells to a grid of seed groups: what a table shows.

A *group* is the set of an experiment's cells whose cell fields are all equal
except `seed`; it becomes one table cell, "mean ± std (n)" over its finished
seeds. The group's row label is its value of `Experiment.rows` (the method),
its column label its values of `Experiment.columns`.

Two groups never share a table cell. When two of them land on the same
(row, column) label (say VaSSO at rho 0.1 and at 0.2), the row label of that
method is extended, in every column, with the fields that tell them apart:
"vasso (rho=0.1)" and "vasso (rho=0.2)". Nothing is ever averaged across
hyperparameters.

Each cell is looked up where it must live, `run_dir(cfg)`, and config.json
there must agree with the cell's fields, so a run of another config is never
averaged in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any

from benchmarks.rundir import META, SWEEP, try_read_json
from benchmarks.runstate import read_jobs, scheduler_queue

from .reference import ReferenceTable, ReferenceValue
from .runs import AT, Problem, Run, load_run

SEED_FIELD = "seed"


class ExperimentError(ValueError):
    """An experiment that cannot be laid out: a row or column field its cells lack, or
    a metric its task does not define."""


def format_value(value: Any) -> str:
    """A config value as a label shows it: 0.1 not 0.1000, true not True."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as this float: 0.1, 0.0005
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    return str(value)


def field_label(name: str, value: Any) -> str:
    """Names (a model, a method) stand alone; numbers say what they are: "label_noise=0.2"."""
    return value if isinstance(value, str) else f"{name}={format_value(value)}"


@dataclass
class Group:
    """The seeds of one cell of the grid."""

    cfg: Any  # the first seed's config: everything the group shares but the seed
    fields: dict[str, Any]  # its cell fields without the seed, in JSON form
    runs: list[Run] = field(default_factory=list)
    metrics: tuple[Any, ...] = ()  # the benchmarks.tasks.Metric objects its column shows, headline first
    method: str = ""  # the plain value of Experiment.rows
    row: str = ""  # the row label: `method`, extended when two groups would collide
    column: str = ""
    reference: ReferenceValue | None = None

    @property
    def metric(self) -> Any:
        """The headline metric: what a figure plots."""
        return self.metrics[0]

    @property
    def values(self) -> list[float]:
        return self.values_at(None)

    def values_at(self, at: str | None, collapsed: bool = True, metric: str | None = None
                  ) -> list[float]:
        """The finished seeds' values of test `metric` (default: the headline one): at
        the grid's choice (None), or at "final" / "best" (a table beside the paper's
        value shows both); ``collapsed=False`` leaves out the collapsed runs
        (benchmarks.collapse)."""
        return list(self.values_by_seed(at, collapsed, metric).values())

    def values_by_seed(self, at: str | None, collapsed: bool = True, metric: str | None = None
                       ) -> dict[int, float]:
        """`values_at` keyed by seed index: what a paired comparison matches (results.stats)."""
        name = metric or self.metric.name
        done = [run for run in self.runs if run.state == "done" and (collapsed or not run.collapsed)]
        found = {run.cfg.seed: run.value(name, at) for run in done}
        return {seed: value for seed, value in found.items() if value is not None}

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1); None below two seeds."""
        return statistics.stdev(self.values) if self.n >= 2 else None

    def count(self, state: str) -> int:
        return sum(run.state == state for run in self.runs)

    @property
    def collapsed(self) -> int:
        """Runs that collapsed (benchmarks.collapse): done ones are in `values`, stopped ones not."""
        return sum(run.collapsed for run in self.runs)

    @property
    def diverged(self) -> int:
        """Runs that failed on a non-finite loss: no final accuracy, so in no statistic."""
        return sum(run.diverged for run in self.runs)


@dataclass
class Grid:
    """An experiment's groups laid out as the paper's table."""

    name: str
    title: str
    at: str  # "final" or "best": the section the table shows
    row_field: str
    column_fields: tuple[str, ...]
    figure: str | None
    groups: list[Group]
    rows: list[str]
    columns: list[str]
    problems: list[Problem]
    # The experiment's `average`: a last column averaging this metric over the columns,
    # per seed (a seed counts once every column has it).
    average: str | None = None
    # Published values of a baseline, by column: a labelled row, not the paper's
    # (results/reference/baselines.csv).
    baseline: dict[str, str] = field(default_factory=dict)
    # What defines a shown metric that its number does not show (SIGNATURES), as the
    # finished runs recorded it: {label: {signature: runs}}.
    signatures: dict[str, dict[str, int]] = field(default_factory=dict)

    def cell(self, row: str, column: str) -> Group | None:
        for group in self.groups:
            if group.row == row and group.column == column:
                return group
        return None

    @property
    def runs(self) -> list[Run]:
        return [run for group in self.groups for run in group.runs]


def resolve_runs_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """--runs-dir, else $VASSO_RUNS, else ./runs (ARCHITECTURE.md)."""
    return Path(runs_dir or os.environ.get("VASSO_RUNS") or "./runs")


def _json_form(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def differing_fields(field_sets: Iterable[dict[str, Any]]) -> list[str]:
    """The keys on which the dicts do not all agree, in first-seen order."""
    field_sets = list(field_sets)
    keys = list(dict.fromkeys(key for fields in field_sets for key in fields))
    absent = object()
    return [key for key in keys if len({json.dumps(f.get(key, absent), default=repr) for f in field_sets}) > 1]


def extended_labels(items: list[tuple[Any, str, dict[str, Any]]]) -> list[str]:
    """Labels that tell apart items sharing a (slot, label).

    `items` are (slot, label, fields). Whenever two items share slot and label,
    every item with that label gets the fields that differ among the colliding
    ones appended, "vasso (rho=0.1)", so that one label means one thing
    throughout the table or figure.
    """
    by_slot: dict[tuple[Any, str], list[dict[str, Any]]] = defaultdict(list)
    for slot, label, fields in items:
        by_slot[(slot, label)].append(fields)
    extra: dict[str, list[str]] = defaultdict(list)
    for (_, label), colliding in by_slot.items():
        if len(colliding) > 1:
            for key in differing_fields(colliding):
                if key not in extra[label]:
                    extra[label].append(key)
    labels = []
    for _, label, fields in items:
        keys = extra.get(label)
        suffix = ", ".join(f"{key}={format_value(fields.get(key, '—'))}" for key in keys) if keys else ""
        labels.append(f"{label} ({suffix})" if suffix else label)
    return labels


def _check_layout(experiment: Any, cfg: Any) -> None:
    for name in (experiment.rows, *experiment.columns):
        if not hasattr(cfg, name):
            raise ExperimentError(
                f"experiment {experiment.name!r} lays its table out by {name!r}, "
                f"which is not a field of its cell configs; fix its rows/columns in benchmarks/experiments.py"
            )


def column_metrics(experiment: Any, column: str, task: Any) -> tuple[Any, ...]:
    """The metrics (benchmarks.tasks.Metric) that `column` of `experiment` shows; a
    ValueError naming the task's metrics when the experiment names one it lacks."""
    names = (getattr(experiment, "column_metrics", {}).get(column)
             or getattr(experiment, "metrics", ()) or (task.primary,))
    try:
        return tuple(task.metric(name) for name in names)
    except ValueError as err:  # a ConfigError
        raise ExperimentError(f"experiment {experiment.name!r}: {err}") from None


def collect(
    experiment: Any,
    runs_dir: str | os.PathLike | None = None,
    at: str = "final",
    references: ReferenceTable | None = None,
    slurm_jobs: Mapping[str, str] | None = None,
) -> Grid:
    """Read every cell of `experiment` from `<runs_dir>/<experiment>/<cell-id>/` into a Grid.

    `at`: "final" (the last evaluation) or "best" (the best evaluation by the task's
    primary metric, what the official code reports). Each column shows the
    metrics the experiment names for it (:func:`column_metrics`). `references`: the paper's
    values (default: results/reference/paper.csv). `slurm_jobs`: {job id:
    state} of the scheduler's queue (default: ask `squeue` once, when there is one).
    """
    from benchmarks.config import cell_fields, cell_id, run_dir  # the engine's naming of run directories
    from benchmarks.tasks import get_task

    if at not in AT:
        raise ValueError(f"at must be one of {AT}, got {at!r}")
    root = resolve_runs_dir(runs_dir)
    references = references if references is not None else ReferenceTable.load()
    if slurm_jobs is None:  # ask squeue once for the whole table (None: no scheduler answers)
        slurm_jobs = scheduler_queue()
    # Submitted but not yet started, a Slurm cell is known only to slurm/'s ledger.
    submitted = read_jobs(root / experiment.name / SWEEP) if slurm_jobs else {}

    groups: dict[str, Group] = {}
    seen: set[Path] = set()
    for cfg in experiment.cells:
        _check_layout(experiment, cfg)
        # Keep the type of runs_dir the config class uses (str or Path).
        cfg = dataclasses.replace(cfg, runs_dir=type(cfg.runs_dir)(root))
        path = Path(run_dir(cfg))
        if path in seen:  # the same cell listed twice is one run, not two seeds
            continue
        seen.add(path)
        fields = cell_fields(cfg)
        shared = _json_form({k: v for k, v in fields.items() if k != SEED_FIELD})
        key = json.dumps(shared, sort_keys=True)
        if key not in groups:
            groups[key] = Group(cfg=cfg, fields=shared)
        groups[key].runs.append(load_run(cfg, path, fields, at, slurm_jobs, submitted.get(cell_id(cfg))))

    ordered = list(groups.values())
    for group in ordered:
        group.method = field_label(experiment.rows, getattr(group.cfg, experiment.rows))
        group.column = ", ".join(field_label(c, getattr(group.cfg, c)) for c in experiment.columns)
        group.metrics = column_metrics(experiment, group.column, get_task(group.cfg.task))
        group.reference = references.lookup(experiment.name, group.cfg)
    rows = extended_labels([(g.column, g.method, g.fields) for g in ordered])
    for group, row in zip(ordered, rows):
        group.row = row
    slots = [(g.row, g.column) for g in ordered]
    if len(set(slots)) != len(slots):  # only when distinct values print alike ("1" and 1)
        clash = sorted({s for s in slots if slots.count(s) > 1})
        raise ValueError(f"experiment {experiment.name!r}: cells {clash} cannot be told apart by their labels")

    return Grid(
        name=experiment.name,
        title=experiment.title,
        at=at,
        row_field=experiment.rows,
        column_fields=tuple(experiment.columns),
        figure=getattr(experiment, "figure", None),
        groups=ordered,
        rows=list(dict.fromkeys(g.row for g in ordered)),
        columns=list(dict.fromkeys(g.column for g in ordered)),
        problems=[problem for g in ordered for run in g.runs for problem in run.problems],
        average=getattr(experiment, "average", None),
        baseline=load_baseline(experiment.name),
        signatures=metric_signatures(ordered),
    )


# Metrics defined by settings their number does not show: the run's meta.json records them
# under this key, and the table prints them under itself (sacreBLEU's tokenizer, casing,
# smoothing and version: one BLEU is comparable with another only under the same signature).
SIGNATURES = {"sacrebleu": ("sacrebleu_signature", "sacreBLEU signature")}


def metric_signatures(groups: list[Group]) -> dict[str, dict[str, int]]:
    """``{label: {signature: finished runs}}`` for each metric of SIGNATURES the groups show."""
    shown = {metric.name for group in groups for metric in group.metrics}
    found: dict[str, dict[str, int]] = {}
    for metric, (key, label) in SIGNATURES.items():
        if metric not in shown:
            continue
        counts: Counter[str] = Counter()
        for run in (run for group in groups for run in group.runs if run.state == "done"):
            meta, _ = try_read_json(run.path / META)
            value = meta.get(key) if isinstance(meta, dict) else None
            counts[value if isinstance(value, str) else "not recorded"] += 1
        if counts:
            found[label] = dict(counts)
    return found


BASELINES_CSV = Path(__file__).parent / "reference" / "baselines.csv"
BASELINE_LABEL = "published baseline (anchor, not the paper's)"
BASELINE_NOTE = ("The published-baseline row is not the paper's: a published figure of the base "
                 "model and recipe, to anchor ours (results/reference/baselines.csv says where each "
                 "comes from and which metric).")


def load_baseline(experiment: str, path: Path = BASELINES_CSV) -> dict[str, str]:
    """``{column: value as written}`` of the published baseline of ``experiment``."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return {row["column"]: row["value"] for row in csv.DictReader(f)
                if row["experiment"] == experiment}
