"""Paired statistics under a table: is a difference between two methods more than seed noise?

Cells with the same seed index share their initial weights, their batches and
their noisy labels (the engine derives all three from the seed index), so two
methods are compared seed by seed: the differences d_s = a_s - b_s over the
seeds both finished, their mean, and a 95% t-interval for that mean,

    mean(d) ± t_{0.975, n-1} · sd(d) / sqrt(n),

Student's t with n - 1 degrees of freedom (a bootstrap is meaningless at the
three seeds of a CIFAR table). A difference is *distinguishable from zero*
when its interval excludes zero; with one common seed there is no interval,
and a column where no seed finished for both gets no line.

Two uses: the lines under every table ("vasso - sam on resnet18: +0.21
[-0.10, +0.52], n = 3: not distinguishable from zero"; VaSSO against SAM by
default, every method against ``--baseline``), and the dagger that marks a
column's best mean when the best method is not distinguishable from the
runner-up by the same test.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy.stats import t as student_t

from .grid import Grid

CONFIDENCE = 0.95
INTERVAL = "95% t-interval of the mean paired difference over seeds"


class UnknownBaseline(ValueError):
    """``--baseline`` names no row or method of the experiment."""


@dataclass(frozen=True)
class Paired:
    """``a - b`` over the seeds both finished."""

    mean: float | None  # None: no common seed
    low: float | None  # None: fewer than two common seeds
    high: float | None
    n: int

    @property
    def distinguishable(self) -> bool:
        """The interval excludes zero (never with fewer than two seeds)."""
        return self.low is not None and (self.low > 0 or self.high < 0)

    def verdict(self) -> str:
        if self.low is None:
            return "one seed: no interval"
        if self.low == self.high == 0:
            return "identical on every seed"
        if not self.distinguishable:
            return "not distinguishable from zero"
        return f"distinguishable from zero ({'higher' if self.mean > 0 else 'lower'})"

    def __str__(self) -> str:
        text = "—" if self.mean is None else f"{self.mean:+.2f}"
        if self.low is not None:
            text += f" [{self.low:+.2f}, {self.high:+.2f}]"
        return f"{text}, n = {self.n}: {self.verdict()}"


def paired(a: dict[int, float], b: dict[int, float]) -> Paired:
    """``a - b`` seed by seed, with the t-interval of its mean."""
    diffs = [a[s] - b[s] for s in sorted(a.keys() & b.keys())]
    n = len(diffs)
    if n == 0:
        return Paired(None, None, None, 0)
    mean = statistics.fmean(diffs)
    if n == 1:
        return Paired(mean, None, None, 1)
    half = float(student_t.ppf((1 + CONFIDENCE) / 2, n - 1)) * statistics.stdev(diffs) / math.sqrt(n)
    return Paired(mean, mean - half, mean + half, n)


def comparisons(grid: Grid, baseline: str | None = None) -> list[tuple[str, str]]:
    """The (row, baseline row) pairs to print: every VaSSO row against every SAM row by
    default; with ``baseline`` (a row label or a method), every other row against it.
    UnknownBaseline names a baseline that is not in the experiment."""
    if baseline is None:
        against = [g.row for g in grid.groups if g.method == "sam"]
        rows = [g.row for g in grid.groups if g.method == "vasso"]
    else:
        against = [baseline] if baseline in grid.rows else [g.row for g in grid.groups if g.method == baseline]
        if not against:
            raise UnknownBaseline(f"--baseline {baseline!r} is not a method of experiment {grid.name!r}; "
                             f"its rows are: {', '.join(grid.rows)}")
        rows = [r for r in grid.rows if r not in against]
    against, rows = list(dict.fromkeys(against)), list(dict.fromkeys(rows))
    return [(row, base) for base in against for row in rows]


def column_metrics(grid: Grid, column: str) -> list:
    """The metrics (benchmarks.tasks.Metric) a column shows, headline first."""
    return list(dict.fromkeys(m for g in grid.groups if g.column == column for m in g.metrics))


def difference_lines(grid: Grid, columns: list[tuple[str, str | None, str]],
                     baseline: str | None = None) -> list[str]:
    """One line per comparison, table column and metric where the two share a finished
    seed: "vasso - sam on resnet18: +0.30 [+0.05, +0.55], n = 3: distinguishable from zero (higher)".

    ``columns``: (column, at, label) as the table lays them out (a column with a paper
    value is two: final and best)."""
    lines = []
    for row, base in comparisons(grid, baseline):
        for column, at, label in columns:
            a, b = grid.cell(row, column), grid.cell(base, column)
            if a is None or b is None:
                continue
            metrics = column_metrics(grid, column)
            for metric in metrics:
                difference = paired(a.values_by_seed(at, metric=metric.name),
                                    b.values_by_seed(at, metric=metric.name))
                if difference.n:  # a column where the two share no finished seed has nothing to say
                    where = ", ".join(filter(None, [label, metric.name if len(metrics) > 1 else ""]))
                    lines.append(f"{row} - {base}{f' on {where}' if where else ''}: {difference}")
    return lines


def undecided_best(grid: Grid, at: str | None) -> frozenset[tuple[str, str]]:
    """The (column, metric) whose best mean is not distinguishable from the runner-up's
    (paired, as above; a tie, or fewer than two common seeds, is not distinguishable)."""
    undecided = set()
    for column in grid.columns:
        for metric in column_metrics(grid, column):
            seeds = [g.values_by_seed(at, metric=metric.name) for g in grid.groups if g.column == column]
            ranked = sorted((s for s in seeds if s), key=lambda s: statistics.fmean(s.values()),
                            reverse=metric.higher_is_better)
            if len(ranked) >= 2 and not paired(ranked[0], ranked[1]).distinguishable:
                undecided.add((column, metric.name))
    return frozenset(undecided)
