"""`python -m results EXPERIMENT`: render what is finished of one experiment.

Writes `<out>/tables/EXPERIMENT.md` and `.tex` and, once any run is finished,
`<out>/figures/EXPERIMENT-curves.{pdf,png}` (test accuracy per epoch) and, for
an experiment whose figure is "noise" or "theta", `EXPERIMENT-<figure>.{pdf,png}`.
Unfinished, failed and damaged runs never stop the rendering: the table shows
them as such and they are reported on stderr with their paths.

Under each table, the paired differences of VaSSO against SAM (or of every
method against `--baseline METHOD`) over seeds, with 95% t-intervals
(results/stats.py).

Nothing rendered is lost to a typo: a runs dir that does not exist is an error,
and a table with numbers is never replaced by one without any (no run of the
experiment done where we looked) unless `--overwrite-empty` says so. Exit
status: 0 rendered, 2 bad input (unknown experiment, a runs dir that does not
exist, an empty table that would replace one with numbers, a `--baseline` that is
not a method of the experiment, a bad option).

`--experiments-module` (env `VASSO_EXPERIMENTS_MODULE`) renders a user's own
experiments, the ones `python -m slurm` swept with the same option.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from benchmarks.config import ArgumentParser

from .grid import ExperimentError, Grid, resolve_runs_dir
from .runs import AT, Problem
from .stats import UnknownBaseline


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m results",
        description="Tables (Markdown, LaTeX) and figures of one experiment from its run directories.",
    )
    parser.add_argument("experiment", help="a name from benchmarks/experiments.py, e.g. demo, cifar10")
    parser.add_argument(
        "--experiments-module", default=os.environ.get("VASSO_EXPERIMENTS_MODULE"),
        help="module (dotted name or .py path) whose EXPERIMENTS dict to use instead of "
        "benchmarks.experiments, as given to `python -m slurm` (env VASSO_EXPERIMENTS_MODULE)",
    )
    parser.add_argument(
        "--metric", dest="at", choices=AT, default="final",
        help="the test metrics at the final evaluation (default) or at the best one (by the "
        "task's primary metric), in columns without a paper value; a column with one shows "
        "both, labelled, the paper's beside the best",
    )
    parser.add_argument(
        "--baseline", default=None, metavar="METHOD",
        help="under the table, every method's paired difference to this one (a method or a row "
        "label as the table prints it); default: VaSSO against SAM where both are in the experiment",
    )
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="where the runs are (default: $VASSO_RUNS, else ./runs); must exist")
    parser.add_argument(
        "--out", type=Path, default=Path("outputs"),
        help="where tables/ and figures/ go (default: ./outputs, the repository's outputs/ from its root)",
    )
    parser.add_argument(
        "--overwrite-empty", action="store_true",
        help="replace the experiment's tables even when they hold numbers and no run is done now "
        "(and remove its figures, which would no longer match)",
    )
    return parser


# A table cell with a number, between the Markdown or LaTeX cell delimiters:
# "| 92.59 ± 1.10 (3) |", "| **92.59**† (2/3) |", "& \\textbf{92.59 $\\pm$ 1.10}$^\\dagger$ (3) \\\\",
# "| 88.10 ± 0.40 / — (3) |" (a column of two metrics).
_MEAN = r"(?:(?:\*\*|\\textbf\{)?-?\d+(?:\.\d+)?(?: (?:±|\$\\pm\$) \d+(?:\.\d+)?)?(?:\*\*|\})?(?:†|\$\^\\dagger\$)?|—|---)"
_NUMBER_CELL = re.compile(rf"[|&] {_MEAN}(?: / {_MEAN})* \(\d+(?:/\d+)?\) (?=[|&]|\\\\)")


def tables_with_numbers(out: Path, name: str) -> list[Path]:
    """The experiment's tables under `out` that show at least one measured number."""
    paths = [out / "tables" / f"{name}{suffix}" for suffix in (".md", ".tex")]
    return [p for p in paths if p.is_file() and _NUMBER_CELL.search(p.read_text(encoding="utf-8"))]


FIGURE_KINDS = ("curves", "noise", "theta")  # EXPERIMENT-<kind>.{pdf,png}


class EmptyRendering(ValueError):
    """A table with numbers would be replaced by one without any."""


def draw_figures(grid: Grid, folder: Path) -> list[Path]:
    """Write the grid's figures, `<folder>/NAME-<kind>.{pdf,png}`; the paths written.
    What they skip (a cut line in metrics.jsonl) is added to `grid.problems`."""
    from . import plots

    figures = [("curves", lambda: plots.plot_curves(grid, grid.problems))]
    if grid.figure in ("noise", "theta"):
        figures.append((grid.figure, lambda: plots.plot_sweep(grid)))
    written = []
    for kind, draw in figures:
        written += plots.save(draw(), folder / f"{grid.name}-{kind}")
    return written


def render(experiment: Any, runs_dir: Path | None, out: Path, at: str,
           overwrite_empty: bool = False, baseline: str | None = None
           ) -> tuple[list[Path], list[Problem]]:
    """Write the experiment's tables and figures under `out`; the paths written and the problems met.

    Raises EmptyRendering, writing nothing, when no run is done and a table
    there holds numbers (unless `overwrite_empty`: then the experiment's old
    figures, which the empty table would contradict, are removed); and
    `results.stats.UnknownBaseline`, writing nothing, for a `baseline` not in the experiment.
    """
    from . import render as tables, stats
    from .grid import collect

    grid = collect(experiment, runs_dir=runs_dir, at=at)
    stats.comparisons(grid, baseline)  # an unknown baseline fails before anything is written
    any_done = any(run.state == "done" for run in grid.runs)
    if not any_done and not overwrite_empty:
        kept = tables_with_numbers(out, grid.name)
        if kept:
            raise EmptyRendering(
                f"no run of {grid.name!r} is done under {resolve_runs_dir(runs_dir)}, and "
                f"{kept[0]} holds numbers: kept it. Pass the --runs-dir that holds the runs, "
                "or --overwrite-empty to replace it with an empty table"
            )
    written = []
    # Figures first: what they skip (a cut line in metrics.jsonl) is listed under the table too.
    if any_done:
        written += draw_figures(grid, out / "figures")
    elif overwrite_empty:
        for kind in FIGURE_KINDS:
            for stale in (out / "figures" / f"{grid.name}-{kind}{suffix}" for suffix in (".pdf", ".png")):
                if stale.is_file():
                    stale.unlink()
                    print(f"removed {stale} (no run is done: it would contradict the table)")
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".md", tables.markdown(grid, baseline)), (".tex", tables.latex(grid, baseline))):
        path = out / "tables" / f"{grid.name}{suffix}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written, grid.problems


def checked_folders(runs_dir: Path | None, out: Path) -> Path:
    """The runs dir to read (--runs-dir, $VASSO_RUNS, ./runs), which must exist, after checking
    that `out` is writable: bad input is a ValueError saying what to pass, before any run is read."""
    from benchmarks.rundir import check_writable

    resolved = resolve_runs_dir(runs_dir)
    if not resolved.is_dir():
        given = "--runs-dir" if runs_dir else ("$VASSO_RUNS" if os.environ.get("VASSO_RUNS") else "the default")
        raise ValueError(f"runs dir {resolved} ({given}) does not exist; pass --runs-dir with the folder "
                         "that holds the runs (`python -m slurm launch` writes them)")
    check_writable(out, "--out")  # a ConfigError, a ValueError
    return resolved


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from benchmarks.experiments import get

    try:
        experiment = get(args.experiment, args.experiments_module)
    except ValueError as exc:
        print(f"python -m results: {exc}", file=sys.stderr)
        return 2
    try:
        runs_dir = checked_folders(args.runs_dir, args.out)
    except ValueError as exc:
        print(f"python -m results: error: {exc}", file=sys.stderr)
        return 2
    try:
        written, problems = render(experiment, runs_dir, args.out, args.at, args.overwrite_empty,
                                   args.baseline)
    except (EmptyRendering, ExperimentError, UnknownBaseline) as exc:
        print(f"python -m results: error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    for path in written:
        print(f"wrote {path}")
    if not any(p.suffix == ".png" for p in written):
        print(f"no finished run of {args.experiment!r} yet: no figure")
    return 0
