"""Run directories -> the paper's tables (Markdown, LaTeX) and figures.

    python -m results EXPERIMENT [--metric final|best] [--runs-dir DIR] [--out DIR]
                                 [--experiments-module MODULE] [--overwrite-empty]

reads every cell of `benchmarks.experiments.get(EXPERIMENT, MODULE)` from its run
directory and writes `<out>/tables/EXPERIMENT.{md,tex}` and
`<out>/figures/EXPERIMENT-<kind>.{pdf,png}` (`<out>`: ./outputs, a folder of
its own, not this package's). The parts, each usable alone:

    grid.collect(experiment, runs_dir, metric) -> Grid   seeds grouped, states classified
    render.markdown(grid), render.latex(grid)     -> str  the table (render.html, .tabular: alone)
    plots.plot_curves(grid), plots.plot_sweep(grid) -> matplotlib Figure
    reference.ReferenceTable                             the paper's values (reference/paper.csv)

`python -m results.report` (`make report`) renders every experiment, with the
provenance of each number, into one PDF and one static web page (results/report.py).

Only run directories and `benchmarks.experiments` are read; nothing here
imports `slurm/`.
"""

from .grid import Grid, Group, collect
from .runs import Problem, Run

__all__ = ["Grid", "Group", "Problem", "Run", "collect"]
