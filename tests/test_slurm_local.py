"""slurm/ end to end on the local and debug executors: real digits cells (a few
steps each) trained by real `python -m benchmarks` children."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks import rundir
from benchmarks.config import run_dir
from slurm import cli, sweep

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Tiny digits cells: a few steps per epoch, so a cell is mostly Python start-up.
EXPERIMENTS_MODULE = textwrap.dedent("""
    from benchmarks.experiments import Experiment, grid

    TINY = dict(task="digits", epochs=2, steps_per_epoch=3, batch_size=32, label_noise=0.25, progress="log")

    def experiment(name, **axes):
        return Experiment(name, name, grid(dict(TINY, experiment=name), **axes))

    EXPERIMENTS = {
        "tiny": experiment("tiny", optimizer=["sgd"], seed=[0, 1]),
        # lr 1e30 makes the loss non-finite at once: the engine fails the cell.
        "fail": experiment("fail", lr=[0.05, 1e30], optimizer=["sgd"], seed=[0]),
        # A batch larger than the 1347 training images: the engine rejects the cell (exit 2).
        "reject": experiment("reject", batch_size=[4096], optimizer=["sgd"], seed=[0]),
        # Long enough (full epochs) to be stopped mid-run.
        "long": Experiment("long", "long", grid(
            dict(TINY, experiment="long", steps_per_epoch=None, epochs={long_epochs}), optimizer=["sgd"], seed=[0])),
    }
""")


def write_experiments(folder: Path, long_epochs: int = 30) -> Path:
    path = folder / "sweep_experiments.py"
    path.write_text(EXPERIMENTS_MODULE.replace("{long_epochs}", str(long_epochs)))
    return path


@pytest.fixture
def sweep_env(tmp_path):
    """(experiments module, runs dir) for a test."""
    return write_experiments(tmp_path), tmp_path / "runs"


def run_cli(capsys, module, runs, *argv):
    code = cli.main([*argv, "--experiments-module", str(module), "--runs-dir", str(runs)])
    out = capsys.readouterr()
    return code, out.out + out.err


def statuses(module, runs, name):
    cells = sweep.relocate(sweep.get_experiment(name, str(module)).cells, str(runs), None)
    return sweep.cell_states(cells, name, sweep.scheduler_queue())


def wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def metric_epochs(path: Path, split: str = "test") -> list[int]:
    lines = (path / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines if json.loads(line)["split"] == split]


def test_launch_wait_runs_every_cell_once_and_relaunch_submits_nothing(capsys, sweep_env):
    module, runs = sweep_env
    code, out = run_cli(capsys, module, runs, "launch", "tiny", "--executor", "local", "--parallel", "2", "--wait")
    assert code == 0, out
    assert "2 of 2 cell(s) finished" in out
    states = statuses(module, runs, "tiny")
    assert [s.state for s in states] == ["done", "done"]
    for s in states:
        assert not (s.path / rundir.CLAIM).exists() and not (s.path / rundir.LOCK).exists(), "lock left behind"
        assert metric_epochs(s.path) == [1, 2]
        assert json.loads((s.path / "result.json").read_text())["final"]["epoch"] == 2
    stamps = [(s.path / "result.json").stat().st_mtime_ns for s in states]

    code, out = run_cli(capsys, module, runs, "launch", "tiny", "--executor", "local", "--wait")
    assert code == 0 and "nothing to launch (2 done)" in out
    assert [(s.path / "result.json").stat().st_mtime_ns for s in states] == stamps

    code, out = run_cli(capsys, module, runs, "collect", "tiny")
    assert code == 0 and "2 of 2 cells done" in out
    assert sum(bool(re.match(r"[0-9a-f]{12}  ", line)) for line in out.splitlines()) == 2


def test_failed_cell_is_left_alone_by_launch_and_rerun_alone_by_retry(capsys, sweep_env):
    module, runs = sweep_env
    code, out = run_cli(capsys, module, runs, "launch", "fail", "--executor", "local", "--wait")
    assert code == 1
    by_lr = {s.cfg.lr: s for s in statuses(module, runs, "fail")}
    good, bad = by_lr[0.05], by_lr[1e30]
    assert (good.state, bad.state) == ("done", "failed")
    error = json.loads((bad.path / "error.json").read_text())
    assert "finite" in json.dumps(error).lower() or "nan" in json.dumps(error).lower(), error
    good_stamp = (good.path / "result.json").stat().st_mtime_ns
    first_error = (bad.path / "error.json").stat().st_mtime_ns

    code, out = run_cli(capsys, module, runs, "launch", "fail", "--executor", "local", "--wait")
    assert code == 0 and "nothing to launch (1 done, 1 failed)" in out and "retry fail" in out

    code, out = run_cli(capsys, module, runs, "retry", "fail", "--executor", "local", "--wait")
    assert "running 1 cell(s)" in out and bad.cell in out and good.cell not in out.split("logs in")[1]
    assert code == 1  # lr 1e30 fails again, as it should
    assert (bad.path / "error.json").stat().st_mtime_ns > first_error, "retry did not rerun the failed cell"
    assert (good.path / "result.json").stat().st_mtime_ns == good_stamp


def test_detached_launch_claims_cells_at_once_and_a_stopped_runner_leaves_resumable_cells(capsys, sweep_env):
    module, runs = sweep_env
    code, out = run_cli(capsys, module, runs, "launch", "long", "--executor", "local")
    assert code == 0, out
    runner = int(re.search(r"runner \(pid (\d+)\)", out).group(1))
    [cell] = statuses(module, runs, "long")
    assert cell.state in ("pending", "running")
    code, out = run_cli(capsys, module, runs, "launch", "long", "--executor", "local")
    assert "nothing to launch" in out, "a claimed cell was launched twice"

    # Stop the runner once the first epoch is on disk: its child checkpoints and exits 75.
    wait_until(lambda: (cell.path / "metrics.jsonl").exists(), 60, "the first evaluation")
    os.kill(runner, signal.SIGTERM)
    wait_until(lambda: not rundir.pid_alive(runner), 60, "the runner to stop")
    [cell] = statuses(module, runs, "long")
    assert cell.state == "stopped" and (cell.path / "checkpoint.pt").exists()
    assert not (cell.path / "result.json").exists()
    done_before = metric_epochs(cell.path)

    code, out = run_cli(capsys, module, runs, "launch", "long", "--executor", "local", "--wait")
    assert code == 0, out
    epochs = metric_epochs(cell.path)
    assert epochs == list(range(1, 31)), f"epochs repeated or lost across the resume: {epochs}"
    assert len(done_before) < 30


def test_detached_launch_never_overwrites_a_lock_the_runner_already_took(capsys, sweep_env, monkeypatch):
    """The race: the runner starts the cell (the engine takes its lock) before the
    launching command returns; the cell is then running, under the engine's pid."""
    module, runs = sweep_env
    [cell] = statuses(module, runs, "long")
    real_popen = subprocess.Popen

    def popen_then_let_the_runner_start_its_cell(*args, **kwargs):
        runner = real_popen(*args, **kwargs)
        if "slurm.local" not in args[0]:  # squeue and friends
            return runner
        held = lambda: rundir.read_lock(cell.path / rundir.LOCK) is not None
        wait_until(held, 60, "the runner to start its cell")
        return runner

    monkeypatch.setattr(cli.subprocess, "Popen", popen_then_let_the_runner_start_its_cell)
    code, out = run_cli(capsys, module, runs, "launch", "long", "--executor", "local")
    monkeypatch.undo()
    runner = int(re.search(r"runner \(pid (\d+)\)", out).group(1))
    try:
        assert code == 0, out
        lock = rundir.read_lock(cell.path / rundir.LOCK)
        [now] = statuses(module, runs, "long")
        assert now.state == "running" and lock["pid"] != runner, f"not the engine's lock: {lock}"
        assert rundir.read_lock(cell.path / rundir.CLAIM)["pid"] == runner, "the runner's claim is gone"
    finally:
        os.kill(runner, signal.SIGTERM)
        wait_until(lambda: not rundir.pid_alive(runner), 60, "the runner to stop")


def test_detached_launch_reports_a_runner_that_dies_before_claiming(capsys, sweep_env, monkeypatch):
    module, runs = sweep_env
    def write_broken_spec(path, *args):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not json")

    monkeypatch.setattr(cli, "write_spec", write_broken_spec)
    code, out = run_cli(capsys, module, runs, "launch", "long", "--executor", "local")
    assert code == 2 and "stopped before it claimed its cells" in out, out
    log = Path(re.search(r"its log: (\S+)", out).group(1))
    assert "JSONDecodeError" in log.read_text()
    assert [s.state for s in statuses(module, runs, "long")] == ["not launched"]


def test_debug_executor_trains_in_process(capsys, sweep_env):
    module, runs = sweep_env
    code, out = run_cli(capsys, module, runs, "launch", "tiny", "--executor", "debug", "--only", "seed=1")
    assert code == 0 and "in-process" in out
    assert [s.state for s in statuses(module, runs, "tiny")] == ["not launched", "done"]


def test_python_dash_m_slurm_entry_point(sweep_env):
    module, runs = sweep_env
    out = subprocess.run(
        [sys.executable, "-m", "slurm", "plan", "tiny", "--experiments-module", str(module), "--runs-dir", str(runs)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "2 cells: 2 not launched" in out.stdout
