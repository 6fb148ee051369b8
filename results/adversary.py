"""`python -m results.adversary EXPERIMENT`: the paper's mechanism as a figure.

For every finished run of an experiment whose cells keep snapshots (`adversary`,
`adversary-mnist1d`), `benchmarks.diagnose` scores SAM's and VaSSO's adversaries
against the full-gradient one at each snapshot, from the same weights and batches.
Each run's scores are kept in `<out>/diagnostics/EXPERIMENT/<cell id>.json` and
computed again only when the run has finished since. The figure
`<out>/figures/EXPERIMENT-adversary.{pdf,png}` has one row per trained run (the
trajectory's method) and quantity, ||e_t - e*||/rho and cos(e_t, e*), each
against training progress (a line per theta, 1 is SAM) and against theta (a line
per snapshot).
Exit status: 0 drawn, 2 bad input (unknown experiment, no finished run).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.config import ArgumentParser, cell_id, run_dir  # noqa: E402
from benchmarks.diagnose import DEFAULT_THETAS, diagnose_run  # noqa: E402
from benchmarks.rundir import RESULT, atomic_write_json  # noqa: E402
from benchmarks.trained import open_run  # noqa: E402

from .grid import resolve_runs_dir  # noqa: E402
from .plots import save  # noqa: E402

STEPS, WARMUP = 20, 10
# e* on CIFAR from a fixed 10,000-sample subset of the training set (a fifth; the
# gradient over all 50,000 is a full epoch of work per snapshot); smaller sets whole.
SUBSET = 10_000


def scores(cfg, out: Path, device: str, steps: int, warmup: int) -> list[dict]:
    """The diagnose records of one finished run, from the cache when it is newer than the
    run and was scored the same way."""
    cache = out / "diagnostics" / cfg.experiment / f"{cell_id(cfg)}.json"
    finished = (run_dir(cfg) / RESULT).stat().st_mtime
    if cache.is_file() and cache.stat().st_mtime >= finished:
        cached = json.loads(cache.read_text())
        if (cached["steps"], cached["warmup"]) == (steps, warmup):
            return cached["records"]
    run = open_run(run_dir(cfg), device)
    subset = SUBSET if len(run.data.train) > SUBSET else None
    records = diagnose_run(run, DEFAULT_THETAS, steps, warmup, subset)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cache, {"run_dir": str(run.path), "steps": steps, "warmup": warmup, "records": records})
    return records


QUANTITIES = (("distance", "||e_t - e*|| / rho"), ("cos", "cos(e_t, e*)"))


def plot(runs: dict[str, list[dict]], title: str, steps: int, warmup: int):
    """One row per trained run and quantity: against epoch (a line per theta) and against theta
    (a line per snapshot)."""
    fig, axes = plt.subplots(2 * len(runs), 2, figsize=(10, 3.4 * 2 * len(runs)), squeeze=False)
    rows_of_axes = iter(axes)
    for trained, records in runs.items():
        thetas = sorted({r["theta"] for r in records}, reverse=True)
        epochs = sorted({r["epoch"] for r in records})
        for quantity, ylabel in QUANTITIES:
            by_epoch, by_theta = next(rows_of_axes)
            for i, theta in enumerate(thetas):
                line = sorted((r for r in records if r["theta"] == theta), key=lambda r: r["epoch"])
                label = "SAM (theta = 1)" if theta == 1 else f"VaSSO, theta = {theta:g}"
                by_epoch.errorbar([r["epoch"] for r in line], [r[f"{quantity}_mean"] for r in line],
                                  yerr=[r[f"{quantity}_std"] for r in line], label=label, marker="o",
                                  markersize=3, capsize=2,
                                  color=plt.get_cmap("viridis")(i / max(len(thetas) - 1, 1)))
            for i, epoch in enumerate(epochs):
                line = sorted((r for r in records if r["epoch"] == epoch), key=lambda r: r["theta"])
                by_theta.plot([r["theta"] for r in line], [r[f"{quantity}_mean"] for r in line], marker="o",
                              markersize=3, label=f"epoch {epoch}",
                              color=plt.get_cmap("plasma")(i / max(len(epochs) - 1, 1)))
            by_epoch.set(xlabel="epoch (weights of the trained run)", ylabel=ylabel,
                         title=f"trained with {trained}: against training progress")
            by_theta.set(xlabel="theta (1 = SAM)", ylabel=ylabel, title=f"trained with {trained}: against theta")
            by_epoch.legend(fontsize=7)
            by_theta.legend(fontsize=7, ncol=2 if len(epochs) > 6 else 1)
    fig.suptitle(f"{title}\nmean ± std over {steps} minibatches at the same weights "
                 f"(after {warmup} unscored ones)", fontsize=10)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    from benchmarks.experiments import get

    parser = ArgumentParser(prog="python -m results.adversary", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="an experiment whose cells keep snapshots, e.g. adversary")
    parser.add_argument("--runs-dir", type=Path, default=None, help="default: $VASSO_RUNS, else ./runs")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="default: ./outputs")
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--steps", type=int, default=STEPS, help=f"minibatches scored (default {STEPS})")
    parser.add_argument("--warmup", type=int, default=WARMUP,
                        help=f"minibatches before them, not scored (default {WARMUP})")
    args = parser.parse_args(argv)
    try:
        experiment = get(args.experiment)
    except ValueError as err:
        print(f"python -m results.adversary: {err}", file=sys.stderr)
        return 2
    root = resolve_runs_dir(args.runs_dir)
    runs = {}
    for cfg in experiment.cells:
        cfg = dataclasses.replace(cfg, runs_dir=str(root))
        if not cfg.snapshot_every:
            print(f"python -m results.adversary: error: experiment {experiment.name!r} keeps no snapshots "
                  "(its cells need snapshot_every); use adversary or adversary-mnist1d", file=sys.stderr)
            return 2
        if not (run_dir(cfg) / RESULT).is_file():
            print(f"not finished, left out: {cfg.optimizer} seed {cfg.seed} — {run_dir(cfg)}")
            continue
        runs[f"{cfg.optimizer} (seed {cfg.seed})"] = scores(cfg, args.out, args.device, args.steps, args.warmup)
    if not runs:
        print(f"python -m results.adversary: error: no run of {experiment.name!r} is finished under {root}; "
              f"launch it first (python -m slurm launch {experiment.name})", file=sys.stderr)
        return 2
    for path in save(plot(runs, experiment.title, args.steps, args.warmup), args.out / "figures" / f"{experiment.name}-adversary"):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
