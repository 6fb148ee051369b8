"""`python -m results.sharpness EXPERIMENT...`: the largest Hessian eigenvalue of every final model.

For every finished run of the experiments (`make table-sharpness`: cifar10 and
cifar100), `benchmarks.sharpness` computes the top eigenvalue of the training
loss's Hessian at the final weights (checkpoint.pt) on a fixed 1,000-sample
training subset, BatchNorm in evaluation mode, Lanczos to a relative residual of
1e-4 within 100 steps. Each run's record is kept in
`<out>/diagnostics/EXPERIMENT/<cell id>-sharpness.json` and computed again only
when the run has finished since. The table `<out>/tables/sharpness.md` lays the
methods out as rows and the experiment's columns (the models) as columns:
"mean ± std (n)" over seeds, the lowest (flattest) mean bold, with a dagger where
it is not distinguishable from the runner-up, and under it VaSSO - SAM seed by
seed with a 95% t-interval (results/stats.py). An estimate that did not converge
is never averaged in silently: its cell says how many did not.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from benchmarks.config import ArgumentParser, cell_id
from benchmarks.rundir import RESULT, atomic_write_json

from .grid import collect, resolve_runs_dir
from .stats import INTERVAL, comparisons, paired

SAMPLES, BATCH, MAX_ITER, TOL = 1000, 250, 100, 1e-4


def measure(run, out: Path, device: str, samples: int) -> dict:
    """The sharpness record of one finished run, from the cache when it is newer than the
    run and of as many samples."""
    from benchmarks.sharpness import run_sharpness
    from benchmarks.trained import open_run

    cache = out / "diagnostics" / run.cfg.experiment / f"{cell_id(run.cfg)}-sharpness.json"
    if cache.is_file() and cache.stat().st_mtime >= (run.path / RESULT).stat().st_mtime:
        cached = json.loads(cache.read_text())
        if cached["num_samples"] == samples:
            return cached
    record = run_sharpness(open_run(run.path, device), samples, BATCH, MAX_ITER, TOL, 0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cache, record)
    return record


def _cell(records: dict[int, dict], best: bool, undecided: bool) -> str:
    if not records:
        return "—"
    values = [r["top_eigenvalue"] for r in records.values()]
    text = f"{statistics.fmean(values):.4g}"
    if len(values) >= 2:
        text += f" ± {statistics.stdev(values):.2g}"
    if best:
        text = f"**{text}**" + ("†" if undecided else "")
    text += f" ({len(values)})"
    missed = sum(not r["converged"] for r in records.values())
    return text + (f"; {missed} not converged (last estimates)" if missed else "")


def table(experiment, root: Path, out: Path, device: str, samples: int) -> list[str]:
    grid = collect(experiment, runs_dir=root)
    found: dict[tuple[str, str], dict[int, dict]] = {}
    for group in grid.groups:
        done = [run for run in group.runs if run.state == "done"]
        found[group.row, group.column] = {run.cfg.seed: measure(run, out, device, samples) for run in done}
    values = {key: {seed: r["top_eigenvalue"] for seed, r in records.items()} for key, records in found.items()}
    lines = [f"## {experiment.title}", "", "| " + " | ".join([grid.row_field, *grid.columns]) + " |",
             "|" + "|".join([":---"] + ["---:"] * len(grid.columns)) + "|"]
    best = {}
    for column in grid.columns:
        ranked = sorted((v for (_, c), v in values.items() if c == column and v),
                        key=lambda v: statistics.fmean(v.values()))
        if len(ranked) >= 2:
            best[column] = (ranked[0], not paired(ranked[1], ranked[0]).distinguishable)
    for row in grid.rows:
        cells = []
        for column in grid.columns:
            mine = found.get((row, column), {})
            winner, undecided = best.get(column, (None, False))
            cells.append(_cell(mine, winner is not None and values[row, column] is winner, undecided))
        lines.append("| " + " | ".join([row, *cells]) + " |")
    compared = [f"- {row} - {base} on {column}: {difference}"
                for row, base in comparisons(grid) for column in grid.columns
                for difference in [paired(values.get((row, column), {}), values.get((base, column), {}))]
                if difference.n]
    if compared:
        lines += ["", f"Paired differences ({INTERVAL}; negative: flatter than the baseline):", "", *compared]
    return lines


def caption(samples: int) -> str:
    return (f"Largest Hessian eigenvalue of the training loss at the final weights: Lanczos to a relative "
            f"residual of {TOL:g} within {MAX_ITER} steps, on {samples} training samples drawn once with seed 0 "
            "(noisy labels and augmentation as training served them), BatchNorm in evaluation mode; mean ± "
            "sample std over seeds (n); the lowest mean per column in bold, † where it is not distinguishable "
            "from the runner-up (paired by seed, 95% t-interval).")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.experiments import get

    parser = ArgumentParser(prog="python -m results.sharpness", description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+", help="experiments whose final models to measure")
    parser.add_argument("--runs-dir", type=Path, default=None, help="default: $VASSO_RUNS, else ./runs")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="default: ./outputs")
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--samples", type=int, default=SAMPLES,
                        help=f"training samples of the Hessian (default {SAMPLES})")
    args = parser.parse_args(argv)
    try:
        experiments = [get(name) for name in args.experiments]
    except ValueError as err:
        print(f"python -m results.sharpness: {err}", file=sys.stderr)
        return 2
    root = resolve_runs_dir(args.runs_dir)
    if not root.is_dir():
        print(f"python -m results.sharpness: error: runs dir {root} does not exist; pass --runs-dir",
              file=sys.stderr)
        return 2
    lines = ["# Sharpness of the final models", "", caption(args.samples)]
    for experiment in experiments:
        lines += ["", *table(experiment, root, args.out, args.device, args.samples)]
    path = args.out / "tables" / "sharpness.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
