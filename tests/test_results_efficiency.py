"""The efficiency experiment: its plan, and its table and figure on fixture runs."""

from __future__ import annotations

import dataclasses
import json

from benchmarks.config import run_dir
from benchmarks.experiments import get
from results import efficiency
from test_results_fixtures import write_done


def test_the_plan_is_every_schedule_of_sam_and_vasso_and_sgd_on_two_models_three_seeds():
    cells = get("efficiency").cells
    assert len(cells) == 2 * 3 * (1 + 2 * (1 + 3 * 2 * 2))  # models x seeds x (sgd + 2 x 13 schedules)
    assert {(c.dataset, c.model) for c in cells} == {("cifar10", "resnet18"), ("cifar100", "wrn28_10")}
    vasso = {(c.ascent_every, c.ascent_prob, c.skip) for c in cells if c.optimizer == "vasso"}
    assert (1, None, "clean") in vasso and (5, None, "reuse") in vasso and (1, 0.1, "clean") in vasso
    assert len(vasso) == 13 and all(c.epochs == 200 for c in cells)


def reduced(root):
    """CIFAR-10 only, two seeds: SGD, SAM and VaSSO every step and periodic 1/2 with reuse."""
    keep = {("sgd", 1, None, "clean"), ("sam", 1, None, "clean"), ("vasso", 1, None, "clean"),
            ("sam", 2, None, "reuse"), ("vasso", 2, None, "reuse")}
    full = get("efficiency")
    cells = tuple(dataclasses.replace(c, runs_dir=str(root)) for c in full.cells
                  if c.dataset == "cifar10" and c.seed < 2 and (c.optimizer, c.ascent_every, c.ascent_prob, c.skip) in keep)
    return dataclasses.replace(full, cells=cells)


def write(cfg, accuracy, passes, seconds):
    path = write_done(cfg, accuracy)
    result = json.loads((path / "result.json").read_text())
    result.update(passes_per_step=passes, time_s=seconds * result["epochs"])
    (path / "result.json").write_text(json.dumps(result))


def test_table_and_figure_from_fixture_runs(tmp_path, monkeypatch, capsys):
    experiment = reduced(tmp_path / "runs")
    assert len(experiment.cells) == 10
    numbers = {("sgd", 1): (94.0, 1.0, 10.0), ("sam", 1): (95.0, 2.0, 20.0), ("vasso", 1): (95.5, 2.0, 21.0),
               ("sam", 2): (94.6, 1.5, 15.0), ("vasso", 2): (94.9, 1.5, 16.0)}
    for cfg in experiment.cells:
        accuracy, passes, seconds = numbers[cfg.optimizer, cfg.ascent_every]
        write(cfg, accuracy + 0.1 * cfg.seed * (cfg.optimizer == "vasso"), passes, seconds)
    assert run_dir(experiment.cells[0]).is_dir()
    monkeypatch.setattr("benchmarks.experiments.get", lambda name, module=None: experiment)
    assert efficiency.main(["--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out/tables/efficiency.md").read_text()
    assert "| sgd | every step | — | 94.00 ± 0.00 (2) | 1.000 | 1.00x |" in text
    assert "| sam | every step | — | 95.00 ± 0.00 (2) | 2.000 | 2.00x |" in text
    assert "| vasso | periodic 1/2 | reuse | 94.95 ± 0.07 (2) | 1.500 | 1.60x |" in text
    # VaSSO against SAM at the same schedule, seed by seed: +0.3 and +0.4.
    assert "- vasso - sam, periodic 1/2, skip reuse: +0.35 [-0.29, +0.99], n = 2: not distinguishable from zero" in text
    assert "- vasso - sam, every step: +0.55 [-0.09, +1.19], n = 2" in text
    assert "Not in the numbers" not in text
    assert (tmp_path / "out/figures/efficiency-tradeoff.png").is_file()
    # A run that is not finished is listed, with its directory, and not averaged in.
    (run_dir(experiment.cells[-1]) / "result.json").unlink()
    assert efficiency.main(["--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out/tables/efficiency.md").read_text()
    assert "Not in the numbers (1 of 10 runs):" in text and str(run_dir(experiment.cells[-1])) in text
