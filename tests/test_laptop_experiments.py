"""The laptop experiments (label noise on digits and MNIST-1D): their grids, their make
targets, and a reduced grid trained for real, rendered with its paired statistics and figure."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import engine
from benchmarks.experiments import Experiment, get
from results.cli import render

TABLES_MK = Path(__file__).resolve().parent.parent / "results" / "tables.mk"


@pytest.mark.parametrize("name, task", [("noise-digits", "digits"), ("noise-mnist1d", "mnist1d")])
def test_the_full_grid_is_four_noise_rates_four_methods_ten_seeds(name, task):
    cells = get(name).cells
    assert len(cells) == len(set(cells)) == 4 * 4 * 10
    assert {c.task for c in cells} == {task}
    assert sorted({c.label_noise for c in cells}) == [0.0, 0.2, 0.4, 0.6]
    assert sorted({(c.optimizer, c.theta if c.optimizer == "vasso" else None) for c in cells},
                  key=str) == [("sam", None), ("sgd", None), ("vasso", 0.4), ("vasso", 0.9)]
    assert sorted({c.seed for c in cells}) == list(range(10))
    # The demo's lesson against collapse: about 60 steps of warm-up (docs/collapse.md).
    assert all(c.warmup_epochs > 0 for c in cells)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target, experiment", [("table-noise-digits", "noise-digits"),
                                                ("figure-noise-mnist1d", "noise-mnist1d")])
def test_make_targets_run_here_then_render_even_when_a_cell_failed(tmp_path, target, experiment):
    fake = tmp_path / "fake-python"
    fake.write_text('#!/bin/sh\necho "$*" >> calls.log\n[ "$2" = slurm ] && exit 1\nexit 0\n')
    fake.chmod(0o755)
    (tmp_path / "Makefile").write_text(f"PY := {fake}\ninstall:\ninclude {TABLES_MK}\n")
    run = subprocess.run(["make", "-s", target], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        f"-m slurm launch {experiment} --executor local --wait", f"-m results {experiment}"]
    assert run.returncode != 0 and f"slurm retry {experiment}" in run.stderr


def reduced(name: str, root: Path, noise: tuple[float, ...]) -> Experiment:
    """The experiment at the `noise` rates, seeds 0 and 1, one epoch: every method."""
    full = get(name)
    cells = tuple(dataclasses.replace(c, epochs=1, warmup_epochs=0.5, runs_dir=str(root / "runs"),
                                      data_dir=str(root / "data"), progress="none")
                  for c in full.cells if c.seed < 2 and c.label_noise in noise)
    return dataclasses.replace(full, cells=cells)


def train_and_render(name: str, root: Path, noise: tuple[float, ...]) -> str:
    experiment = reduced(name, root, noise)
    assert len(experiment.cells) == 4 * 2 * len(noise)
    for cfg in experiment.cells:
        engine.train(cfg)
    written, problems = render(experiment, root / "runs", root / "out", "final")
    assert not problems
    assert (root / "out/figures" / f"{name}-noise.png") in written
    return (root / "out/tables" / f"{name}.md").read_text()


def check_table(text: str, noise: tuple[float, ...]) -> None:
    for row in ("sgd", "sam", "vasso (theta=0.4)", "vasso (theta=0.9)"):
        assert f"| {row} | " in text and text.count(f"| {row} | ") == 1
    for theta in (0.4, 0.9):
        for rate in noise:
            assert f"- vasso (theta={theta}) - sam on label_noise={rate}: " in text
    assert text.count(", n = 2: ") == 2 * len(noise)  # paired over both seeds, in words


def test_reduced_digits_grid_trains_and_renders_with_paired_statistics(tmp_path):
    check_table(train_and_render("noise-digits", tmp_path, (0.6,)), (0.6,))


@pytest.mark.slow  # generating MNIST-1D takes ~10 s of CPU before the 16 cells
def test_reduced_mnist1d_grid_trains_and_renders_with_paired_statistics(tmp_path):
    check_table(train_and_render("noise-mnist1d", tmp_path, (0.0, 0.6)), (0.0, 0.6))


def test_both_laptop_experiments_ask_one_cpu_and_no_gpu_per_cell():
    from slurm.resources import resources_for

    for name in ("noise-digits", "noise-mnist1d"):
        assert {resources_for(c).describe() for c in get(name).cells} == {"gpus=0 cpus=1 mem=2G time=00:30:00"}
