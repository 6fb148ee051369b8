"""`python -m results EXPERIMENT`: render what is finished of one experiment.

Writes `<out>/tables/EXPERIMENT.md` and `.tex` and, once any run is finished,
`<out>/figures/EXPERIMENT-curves.{pdf,png}` (test accuracy per epoch) and, for
an experiment whose figure is "noise" or "theta", `EXPERIMENT-<figure>.{pdf,png}`.
Unfinished, failed and damaged runs never stop the rendering: the table shows
them as such and they are reported on stderr with their paths. Exit status: 0
rendered, 2 bad input (unknown experiment, bad option).

`--experiments-module` (env `VASSO_EXPERIMENTS_MODULE`) renders a user's own
experiments, the ones `python -m slurm` swept with the same option.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .runs import METRICS, Problem


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        "--metric", choices=METRICS, default="final",
        help="test accuracy at the final epoch (default) or at the best epoch, in columns without "
        "a paper value; a column with one shows both, labelled, the paper's beside the best",
    )
    parser.add_argument("--runs-dir", type=Path, default=None, help="default: $VASSO_RUNS, else ./runs")
    parser.add_argument(
        "--out", type=Path, default=Path("results"),
        help="where tables/ and figures/ go (default: ./results, the repository's results/ from its root)",
    )
    return parser


def render(experiment: Any, runs_dir: Path | None, out: Path, metric: str) -> tuple[list[Path], list[Problem]]:
    """Write the experiment's tables and figures under `out`; the paths written and the problems met."""
    from . import plots, render as tables
    from .grid import collect

    grid = collect(experiment, runs_dir=runs_dir, metric=metric)
    written = []
    # Figures first: what they skip (a cut line in metrics.jsonl) is listed under the table too.
    if any(run.state == "done" for run in grid.runs):
        figures = [("curves", lambda: plots.plot_curves(grid, grid.problems))]
        if grid.figure in ("noise", "theta"):
            figures.append((grid.figure, lambda: plots.plot_sweep(grid)))
        for kind, draw in figures:
            written += plots.save(draw(), out / "figures" / f"{grid.name}-{kind}")
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".md", tables.markdown(grid)), (".tex", tables.latex(grid))):
        path = out / "tables" / f"{grid.name}{suffix}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written, grid.problems


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from benchmarks.experiments import get

    try:
        experiment = get(args.experiment, args.experiments_module)
    except ValueError as exc:
        print(f"python -m results: {exc}", file=sys.stderr)
        return 2
    written, problems = render(experiment, args.runs_dir, args.out, args.metric)
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    for path in written:
        print(f"wrote {path}")
    if not any(p.suffix == ".png" for p in written):
        print(f"no finished run of {args.experiment!r} yet: no figure")
    return 0
