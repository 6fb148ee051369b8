"""results/tables.mk: what `make demo` runs, with a stand-in interpreter (nothing trains)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TABLES_MK = Path(__file__).resolve().parent.parent / "results" / "tables.mk"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make_demo(tmp_path: Path, slurm_status: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`make demo` with PY a script that logs its arguments and exits
    ``slurm_status`` for `-m slurm` (0 for `-m results`); (the run, the calls)."""
    fake = tmp_path / "fake-python"
    fake.write_text(f'#!/bin/sh\necho "$*" >> calls.log\n[ "$2" = slurm ] && exit {slurm_status}\nexit 0\n')
    fake.chmod(0o755)
    (tmp_path / "Makefile").write_text(f"PY := {fake}\ninstall:\ninclude {TABLES_MK}\n")
    run = subprocess.run(["make", "-s", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    return run, (tmp_path / "calls.log").read_text().splitlines()


def test_demo_renders_the_table_even_when_a_cell_fails_then_exits_non_zero(tmp_path):
    run, calls = make_demo(tmp_path, slurm_status=1)
    assert calls == ["-m slurm launch demo --executor local --wait", "-m results demo"], calls
    assert run.returncode != 0, "a failed cell must fail make demo"
    assert "outputs/tables/demo.md" in run.stdout and "figure:" not in run.stdout
    assert "slurm retry demo" in run.stderr, run.stderr


def test_demo_success_renders_and_names_table_and_figure(tmp_path):
    run, calls = make_demo(tmp_path, slurm_status=0)
    assert run.returncode == 0, run.stderr
    assert calls == ["-m slurm launch demo --executor local --wait", "-m results demo"]
    assert "table:  outputs/tables/demo.md" in run.stdout and "figure: outputs/figures/demo-curves.png" in run.stdout


@pytest.mark.parametrize("target, experiment", [("table-cifar10", "cifar10"), ("table-cifar100", "cifar100"),
                                                ("table-label-noise", "label-noise"), ("figure-theta", "theta")])
def test_paper_targets_launch_with_slurm_args_then_render(tmp_path, target, experiment):
    fake = tmp_path / "fake-python"
    fake.write_text('#!/bin/sh\necho "$*" >> calls.log\nexit 0\n')
    fake.chmod(0o755)
    (tmp_path / "Makefile").write_text(f"PY := {fake}\ninstall:\ninclude {TABLES_MK}\n")
    run = subprocess.run(["make", "-s", target, "SLURM_ARGS=--partition gpu --only seed=0"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        f"-m slurm launch {experiment} --partition gpu --only seed=0", f"-m results {experiment}"]


@pytest.mark.parametrize("target, environment, call", [
    ("report", {}, "-m results.report"),
    ("tensorboard", {}, "-m tensorboard.main --logdir runs"),
    ("tensorboard", {"VASSO_RUNS": "/scratch/runs"}, "-m tensorboard.main --logdir /scratch/runs"),
])
def test_report_and_tensorboard_targets(tmp_path, monkeypatch, target, environment, call):
    fake = tmp_path / "fake-python"
    fake.write_text('#!/bin/sh\necho "$*" >> calls.log\nexit 0\n')
    fake.chmod(0o755)
    (tmp_path / "Makefile").write_text(f"PY := {fake}\ninstall:\ninclude {TABLES_MK}\n")
    monkeypatch.delenv("VASSO_RUNS", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    run = subprocess.run(["make", "-s", target], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert [line.strip() for line in (tmp_path / "calls.log").read_text().splitlines()] == [call]
