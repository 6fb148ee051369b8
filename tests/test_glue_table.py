"""The glue table: the average column (per seed, over the tasks' scores) and the published
baseline row, labelled as not the paper's."""

from __future__ import annotations

import json
import statistics

from benchmarks.config import TrainConfig
from benchmarks.experiments import GLUE_COLUMN_METRICS, Experiment
from results import grid as results_grid
from results import render
from test_results_fixtures import write_config

SCORES = {("rte", 0): 70.0, ("rte", 1): 74.0, ("cola", 0): 50.0, ("cola", 1): 60.0}


def write_glue_run(cfg: TrainConfig, score: float) -> None:
    path = write_config(cfg)
    own = {"rte": "acc", "cola": "mcc"}[cfg.dataset]
    test = {own: score, "score": score, "loss": 0.5}
    evaluation = {"epoch": 1, "step": 3, "test": test, "train": {"loss": 0.6}}
    (path / "metrics.jsonl").write_text(json.dumps(
        {"epoch": 1, "step": 3, "split": "test", **test, "time_s": 1.0, "lr": 1e-5}) + "\n")
    (path / "result.json").write_text(json.dumps(
        {"primary": "score", "final": evaluation, "best": evaluation, "epochs": 1, "steps": 3,
         "time_s": 1.0, "passes": 6, "passes_per_step": 2.0, "collapse": None}))


def test_the_average_column_and_the_baseline_row(tmp_path):
    cells = tuple(TrainConfig("glue", dataset=d, optimizer="vasso", seed=s, experiment="glue",
                              runs_dir=str(tmp_path)) for d in ("rte", "cola") for s in (0, 1))
    for cfg in cells:
        write_glue_run(cfg, SCORES[cfg.dataset, cfg.seed])
    experiment = Experiment("glue", "GLUE", cells, columns=("dataset",),
                            column_metrics=GLUE_COLUMN_METRICS, average="score")
    table = render.markdown(results_grid.collect(experiment, tmp_path, slurm_jobs={}))
    header = next(line for line in table.splitlines() if line.startswith("| optimizer"))
    assert header.split("|")[-2].strip() == "average (score)"
    vasso = next(line for line in table.splitlines() if line.startswith("| vasso"))
    means = [statistics.fmean([70.0, 50.0]), statistics.fmean([74.0, 60.0])]  # per seed
    assert vasso.split("|")[-2].strip() == (f"{statistics.fmean(means):.2f} ± "
                                            f"{statistics.stdev(means):.2f} (2)")
    baseline = next(line for line in table.splitlines()
                    if line.startswith(f"| {results_grid.BASELINE_LABEL}"))
    assert [c.strip() for c in baseline.split("|")[2:-1]] == ["78.7", "63.6", "71.2"]  # rte, cola, mean
    assert results_grid.BASELINE_NOTE in table
