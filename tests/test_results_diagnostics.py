"""The adversary figure and the sharpness table over finished runs (tiny digits runs trained here)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import engine
from benchmarks.experiments import Experiment, get, grid
from results import adversary, sharpness

TABLES_MK = Path(__file__).resolve().parent.parent / "results" / "tables.mk"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """SAM and VaSSO, two seeds each, one epoch of five steps, a snapshot after it."""
    root = tmp_path_factory.mktemp("runs")
    cells = grid({"task": "digits", "experiment": "tiny", "epochs": 1, "batch_size": 256, "snapshot_every": 1,
                  "label_noise": 0.4, "progress": "none"}, optimizer=("sam", "vasso"), seed=(0, 1))
    experiment = Experiment("tiny", "Tiny", cells, columns=("model",))
    for cfg in cells:
        engine.train(dataclasses.replace(cfg, runs_dir=str(root)))
    return experiment, root


@pytest.fixture
def known(monkeypatch, finished):
    experiment, _ = finished
    monkeypatch.setattr("benchmarks.experiments.get", lambda name, module=None: experiment)
    return finished


@pytest.mark.slow  # ~25 s: four runs diagnosed and a four-row figure drawn twice
def test_adversary_figure_from_cached_diagnoses(known, tmp_path, capsys):
    _, root = known
    argv = ["tiny", "--runs-dir", str(root), "--out", str(tmp_path), "--device", "cpu", "--steps", "3",
            "--warmup", "2"]
    assert adversary.main(argv) == 0
    assert (tmp_path / "figures/tiny-adversary.png").is_file() and (tmp_path / "figures/tiny-adversary.pdf").is_file()
    caches = sorted((tmp_path / "diagnostics/tiny").glob("*.json"))
    assert len(caches) == 4
    stamps = [c.stat().st_mtime_ns for c in caches]
    assert adversary.main(argv) == 0  # nothing finished since: drawn from the cache
    assert [c.stat().st_mtime_ns for c in caches] == stamps
    assert "wrote" in capsys.readouterr().out


def test_adversary_without_a_finished_run_or_snapshots_is_one_line_exit_2(finished, monkeypatch, tmp_path, capsys):
    experiment, root = finished
    monkeypatch.setattr("benchmarks.experiments.get", lambda name, module=None: experiment)
    assert adversary.main(["tiny", "--runs-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no run of 'tiny' is finished" in capsys.readouterr().err
    plain = dataclasses.replace(experiment, cells=tuple(dataclasses.replace(c, snapshot_every=0)
                                                        for c in experiment.cells))
    monkeypatch.setattr("benchmarks.experiments.get", lambda name, module=None: plain)
    assert adversary.main(["tiny", "--runs-dir", str(root), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "keeps no snapshots" in err


def test_sharpness_table_with_paired_differences(known, tmp_path):
    _, root = known
    assert sharpness.main(["tiny", "--runs-dir", str(root), "--out", str(tmp_path), "--device", "cpu",
                           "--samples", "100"]) == 0
    text = (tmp_path / "tables/sharpness.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| sam ") or line.startswith("| vasso ")]
    assert len(rows) == 2 and all(line.endswith("(2) |") for line in rows), text
    assert sum("**" in line for line in rows) == 1  # the flatter of the two, bold
    assert "- vasso - sam on digits_cnn: " in text and ", n = 2: " in text
    assert "BatchNorm in evaluation mode" in text and "on 100 training samples" in text


def test_the_adversary_experiments_keep_snapshots():
    for name, every in (("adversary", 20), ("adversary-mnist1d", 1)):
        cells = get(name).cells
        assert {c.optimizer for c in cells} == {"sam", "vasso"}
        assert {c.snapshot_every for c in cells} == {every}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target, calls", [
    ("figure-adversary", ["-m slurm launch adversary --partition gpu", "-m results.adversary adversary"]),
    ("figure-adversary-mnist1d", ["-m slurm launch adversary-mnist1d --executor local --wait",
                                  "-m results.adversary adversary-mnist1d"]),
    ("table-sharpness", ["-m results.sharpness cifar10 cifar100"]),
    ("table-efficiency", ["-m slurm launch efficiency --partition gpu", "-m results.efficiency"]),
    ("figure-efficiency", ["-m slurm launch efficiency --partition gpu", "-m results.efficiency"]),
])
def test_make_targets(tmp_path, target, calls):
    fake = tmp_path / "fake-python"
    fake.write_text('#!/bin/sh\necho "$*" >> calls.log\nexit 0\n')
    fake.chmod(0o755)
    (tmp_path / "Makefile").write_text(f"PY := {fake}\ninstall:\ninclude {TABLES_MK}\n")
    run = subprocess.run(["make", "-s", target, "SLURM_ARGS=--partition gpu"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "calls.log").read_text().splitlines() == calls
