"""`python -m results.efficiency`: the generalization-computation trade-off, measured.

Reads the `efficiency` experiment's runs (benchmarks/experiments.py) and writes
`<out>/tables/efficiency.md` and `<out>/figures/efficiency-tradeoff.{pdf,png}`.
Per model, one row per method and step schedule: the final test accuracy
(mean ± std (n) over seeds), the forward/backward passes per step the optimizer
counted (result.json's `passes_per_step`, mean over seeds), and the seconds per
epoch (result.json's `time_s` / `epochs`, evaluation included) relative to SGD's
mean in the same column. Under each table, every VaSSO schedule against SAM's same
schedule, seed by seed (results/stats.py). The figure plots accuracy against passes
per step, one line per method, schedule and skip mode through its ascent fractions.
"""

from __future__ import annotations

import statistics
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

from benchmarks.config import ArgumentParser
from benchmarks.rundir import RESULT, try_read_json

from .grid import Group, collect, resolve_runs_dir
from .plots import method_colour, save
from .render import not_in_table
from .stats import INTERVAL, paired


def schedule(group: Group) -> tuple[str, str, str]:
    """(method, schedule, skip mode) as the table names them."""
    cfg = group.cfg
    if cfg.optimizer == "sgd" or (cfg.ascent_every == 1 and cfg.ascent_prob is None):
        return cfg.optimizer, "every step", "—"
    if cfg.ascent_prob is not None:
        return cfg.optimizer, f"random 1/{round(1 / cfg.ascent_prob)}", cfg.skip
    return cfg.optimizer, f"periodic 1/{cfg.ascent_every}", cfg.skip


def measured(group: Group) -> tuple[float | None, float | None]:
    """Mean passes per step and mean seconds per epoch over the group's finished runs."""
    passes, seconds = [], []
    for run in group.runs:
        result, problem = try_read_json(run.path / RESULT) if run.state == "done" else (None, "not done")
        if problem is None and isinstance(result, dict):
            if isinstance(result.get("passes_per_step"), (int, float)):
                passes.append(float(result["passes_per_step"]))
            if isinstance(result.get("time_s"), (int, float)) and result.get("epochs"):
                seconds.append(result["time_s"] / result["epochs"])
    mean = lambda values: statistics.fmean(values) if values else None  # noqa: E731
    return mean(passes), mean(seconds)


def _accuracy(values: dict[int, float]) -> str:
    if not values:
        return "—"
    numbers = list(values.values())
    text = f"{statistics.fmean(numbers):.2f}"
    return text + (f" ± {statistics.stdev(numbers):.2f}" if len(numbers) >= 2 else "") + f" ({len(numbers)})"


def tables(grid) -> list[str]:
    lines = []
    for column in grid.columns:
        groups = [g for g in grid.groups if g.column == column]
        sgd = [measured(g)[1] for g in groups if g.cfg.optimizer == "sgd"]
        baseline = sgd[0] if sgd and sgd[0] else None
        lines += ["", f"## {column}", "",
                  "| method | schedule | skip | accuracy (%) | passes/step | s/epoch vs SGD |",
                  "|:---|:---|:---|---:|---:|---:|"]
        for group in groups:
            passes, seconds = measured(group)
            ratio = f"{seconds / baseline:.2f}x" if seconds is not None and baseline else "—"
            lines.append("| " + " | ".join([*schedule(group), _accuracy(group.values_by_seed(None)),
                                            "—" if passes is None else f"{passes:.3f}", ratio]) + " |")
        by_name = {schedule(g): g for g in groups}
        compared = []
        for (method, steps, skip), group in by_name.items():
            sam = by_name.get(("sam", steps, skip))
            if method == "vasso" and sam is not None:
                difference = paired(group.values_by_seed(None), sam.values_by_seed(None))
                if difference.n:
                    how = steps if skip == "—" else f"{steps}, skip {skip}"
                    compared.append(f"- vasso - sam, {how}: {difference}")
        if compared:
            lines += ["", f"Paired differences in accuracy ({INTERVAL}):", "", *compared]
    return lines


def plot(grid):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(grid.columns), figsize=(6 * len(grid.columns), 4.2), squeeze=False)
    for ax, column in zip(axes[0], grid.columns):
        points = defaultdict(list)  # (method, kind, skip) -> [(passes, accuracy)]
        full = {}
        for group in (g for g in grid.groups if g.column == column):
            passes, _ = measured(group)
            values = group.values_by_seed(None)
            if passes is None or not values:
                continue
            point = (passes, statistics.fmean(values.values()))
            method, steps, skip = schedule(group)
            if steps == "every step":
                full[method] = point
            else:
                points[method, steps.split()[0], skip].append(point)
        if "sgd" in full:
            ax.plot(*full["sgd"], marker="*", markersize=10, linestyle="", color=method_colour("sgd"), label="sgd")
        for (method, kind, skip), found in sorted(points.items()):
            line = sorted(found + ([full[method]] if method in full else []))
            ax.plot([p for p, _ in line], [a for _, a in line], color=method_colour(method),
                    linestyle="-" if skip == "clean" else "--", marker="o" if kind == "periodic" else "s",
                    markersize=4, label=f"{method}, {kind}, skip {skip}")
        ax.set(xlabel="measured forward/backward passes per step", ylabel="final test accuracy (%)", title=column)
        ax.legend(fontsize=7)
    fig.suptitle("\n".join(textwrap.wrap(grid.title, 60 * len(grid.columns))), fontsize=10)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    from benchmarks.experiments import get

    parser = ArgumentParser(prog="python -m results.efficiency", description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=None, help="default: $VASSO_RUNS, else ./runs")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="default: ./outputs")
    args = parser.parse_args(argv)
    root = resolve_runs_dir(args.runs_dir)
    if not root.is_dir():
        print(f"python -m results.efficiency: error: runs dir {root} does not exist; pass --runs-dir",
              file=sys.stderr)
        return 2
    grid = collect(get("efficiency"), runs_dir=root)
    text = [f"# {grid.title}", "",
            "Final test accuracy, mean ± sample std over seeds (n); passes per step as the optimizer "
            "counted them and seconds per epoch (evaluation included) relative to SGD's, means over seeds.",
            *tables(grid)]
    missing = not_in_table(grid)
    if missing:
        text += ["", f"Not in the numbers ({len(missing)} of {len(grid.runs)} runs):", ""]
        text += [f"- {line}" for line in missing]
    path = args.out / "tables" / "efficiency.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    if any(run.state == "done" for run in grid.runs):
        for written in save(plot(grid), args.out / "figures" / "efficiency-tradeoff"):
            print(f"wrote {written}")
    else:
        print("no finished run of 'efficiency' yet: no figure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
