"""Nothing lost under faults (issue 10): damaged run directories, two engines on one
cell, concurrent launches, damaged checkpoints, write failures, pinned threads.

Each test injects the fault on purpose and checks that the suite ends as documented
in docs/sweeps.md and docs/benchmarks.md. CPU only, tiny digits cells.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from benchmarks import rundir
from benchmarks.__main__ import EXIT_BAD_INPUT, EXIT_BUSY, EXIT_FAILED, main as engine_main
from benchmarks.config import TrainConfig, cell_fields, cell_id, run_dir, to_argv
from benchmarks.engine import train
from bench_fixtures import cli as engine_cli
from bench_fixtures import fake_result, read_metrics, read_result, snapshot
from results.grid import collect
from slurm import cli as slurm_cli
from slurm import sweep

REPO = Path(__file__).resolve().parent.parent

# A single-cell experiment for the damaged-directory cases; nothing is trained there.
EXPERIMENTS = textwrap.dedent("""
    from benchmarks.experiments import Experiment, grid
    TINY = dict(task="digits", epochs=2, steps_per_epoch=2, batch_size=32, progress="log")
    EXPERIMENTS = {
        "one": Experiment("one", "one cell", grid(dict(TINY, experiment="one"), seed=[0])),
        "two": Experiment("two", "two cells", grid(dict(TINY, experiment="two"), seed=[0, 1])),
    }
""")


def tiny(runs: Path, **kw) -> TrainConfig:
    fields = dict(epochs=3, steps_per_epoch=4, batch_size=32, optimizer="vasso", theta=0.4,
                  progress="none", runs_dir=str(runs))
    return TrainConfig("digits", **{**fields, **kw})


def same_run(run: Path, reference: Path) -> None:
    assert read_metrics(run) == read_metrics(reference)
    assert read_result(run) == read_result(reference)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the cell :func:`tiny` describes."""
    cfg = tiny(tmp_path_factory.mktemp("reference"))
    train(cfg)
    return run_dir(cfg)


# --------------------------------------------------------------------------- one classifier


def _append(path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def _done(path: Path, cfg: TrainConfig) -> None:
    path.mkdir(parents=True)
    (path / rundir.CONFIG).write_text(json.dumps(dataclasses.asdict(cfg)))
    (path / rundir.METRICS).write_text(json.dumps({"epoch": 1, "split": "test", "acc": 80.0}) + "\n")
    (path / rundir.RESULT).write_text(json.dumps(fake_result(80.0, 81.0, epochs=2)))


def _started(path: Path, cfg: TrainConfig) -> None:
    _done(path, cfg)
    (path / rundir.RESULT).unlink()


def _config_of_another_cell(path: Path, cfg: TrainConfig) -> None:
    _done(path, cfg)
    (path / rundir.CONFIG).write_text(json.dumps({**dataclasses.asdict(cfg), "lr": 0.5}))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


DAMAGES = {
    # name: (damage, expected state, what the reason must name)
    "garbage-result": (lambda p, c: (_done(p, c), (p / rundir.RESULT).write_text("{garbage")),
                       "invalid", "result.json not valid JSON"),
    "result-without-final": (lambda p, c: (_done(p, c), (p / rundir.RESULT).write_text(
        json.dumps({"primary": "acc", "best": {"test": {"acc": 80.0}}}))), "invalid",
        '["final"]["test"]["acc"]'),
    "missing-config": (lambda p, c: (_done(p, c), (p / rundir.CONFIG).unlink()),
                       "invalid", "without config.json"),
    "garbage-config": (lambda p, c: (_started(p, c), (p / rundir.CONFIG).write_text("{")),
                       "invalid", "config.json not valid JSON"),
    "another-cells-config": (_config_of_another_cell, "invalid", "another cell"),
    "truncated-metrics-line": (lambda p, c: (_done(p, c), _append(p / rundir.METRICS, '{"epoch": 2, "spl')),
                               "done", None),
    "zero-byte-checkpoint": (lambda p, c: (_started(p, c), (p / rundir.CHECKPOINT).write_bytes(b"")),
                             "stopped", None),
    "garbage-error": (lambda p, c: (_started(p, c), (p / rundir.ERROR).write_text("{")),
                      "failed", "error.json not valid JSON"),
    "job-only-in-meta": (lambda p, c: (_started(p, c), (p / rundir.META).write_text(
        json.dumps({"slurm_job_ids": ["8_0", "9_0"]}))), "running", None),
    "stale-engine-lock": (lambda p, c: (_started(p, c), (p / rundir.LOCK).write_text(
        json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))), "stopped", None),
    "another-hosts-lock-whose-job-left": (lambda p, c: (_started(p, c), (p / rundir.LOCK).write_text(
        json.dumps({"pid": 1, "host": "elsewhere", "slurm_job_id": "5_0"}))), "stopped", None),
    "live-engine-lock": (lambda p, c: (_started(p, c), rundir.acquire_lock(p / rundir.LOCK, rundir.owner())),
                         "running", None),
    "empty-directory": (lambda p, c: p.mkdir(parents=True), "not launched", None),
}
QUEUE = {"9_0": "RUNNING"}  # what squeue says in every case


def _row_state(out: str, cell: str) -> str:
    [row] = [line for line in out.splitlines() if line.startswith(cell)]
    return re.split(r"\s{2,}", row)[1]


def _one_cell(tmp_path):
    """Experiment "one" of EXPERIMENTS written as a user's module: (module, runs, its cell,
    the arguments every slurm command of these tests takes)."""
    module = tmp_path / "exps.py"
    module.write_text(EXPERIMENTS)
    runs = tmp_path / "runs"
    [cfg] = sweep.relocate(sweep.get_experiment("one", str(module)).cells, str(runs), None)
    return module, runs, cfg, ["one", "--experiments-module", str(module), "--runs-dir", str(runs)]


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_slurm_and_results_agree_on_every_damaged_directory(damage, tmp_path, capsys, monkeypatch):
    make, expected, reason = DAMAGES[damage]
    module, runs, cfg, common = _one_cell(tmp_path)
    path = run_dir(cfg)
    make(path, cfg)
    monkeypatch.setattr(sweep, "scheduler_queue", lambda: dict(QUEUE))

    assert slurm_cli.main(["status", *common]) == 0
    out = capsys.readouterr()
    assert _row_state(out.out, cell_id(cfg)) == expected, out.out
    if expected == "invalid":
        assert reason in out.err and str(path) in out.err, out.err

    assert slurm_cli.main(["collect", *common]) == 0
    out = capsys.readouterr()
    assert f"{int(expected == 'done')} of 1 cells done" in out.out
    if expected == "invalid":
        assert "slurm repair one" in out.err

    launched = []
    monkeypatch.setattr(slurm_cli, "_run_local",
                        lambda args, exp, classes, fields, release: launched.extend(
                            s.cell for group in classes.values() for s in group) or 0)
    assert slurm_cli.main(["launch", *common, "--executor", "local"]) == 0
    out = capsys.readouterr()
    assert launched == ([cell_id(cfg)] if expected in ("stopped", "not launched") else [])
    if expected == "invalid":
        assert reason in out.err and "slurm repair one" in out.err

    from benchmarks.experiments import load
    grid = collect(load(str(module))["one"], runs_dir=runs, slurm_jobs=dict(QUEUE))
    [run] = grid.runs
    assert run.state == expected
    if expected == "invalid":
        assert reason in str(grid.problems[0])
    if expected == "failed":
        assert reason in run.error


def test_repair_moves_the_damaged_files_aside_and_the_cell_reruns(tmp_path, capsys):
    _, _, cfg, common = _one_cell(tmp_path)
    path = run_dir(cfg)
    _done(path, cfg)
    (path / rundir.RESULT).write_text("{garbage")
    assert slurm_cli.main(["repair", *common]) == 0
    out = capsys.readouterr().out
    assert "1 invalid cell(s) repaired" in out
    [moved] = (path / rundir.DAMAGED).iterdir()
    assert (moved / rundir.RESULT).read_text() == "{garbage", "the damaged file is kept, not deleted"
    assert "not valid JSON" in (moved / "why.txt").read_text()
    [status] = sweep.cell_states([cfg], "one")
    assert status.state == "stopped"  # config.json and metrics stay: a launch resumes or reruns it
    assert engine_main(to_argv(cfg)) == 0
    assert sweep.cell_states([cfg], "one")[0].state == "done"


def test_the_engine_refuses_a_damaged_result_instead_of_crashing(tmp_path, capsys):
    cfg = tiny(tmp_path)
    path = run_dir(cfg)
    _done(path, cfg)
    (path / rundir.RESULT).write_text("")
    before = snapshot(path)
    assert engine_main(to_argv(cfg)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "slurm repair" in err
    assert snapshot(path) == before


# --------------------------------------------------------------------------- checkpoints


def _unfinish(run: Path) -> None:
    """A run that stopped after its last epoch's checkpoint, before result.json."""
    (run / rundir.RESULT).unlink()


def test_a_zero_byte_checkpoint_falls_back_to_the_previous_one(tmp_path, reference):
    cfg = tiny(tmp_path)
    train(cfg)
    run = run_dir(cfg)
    _unfinish(run)
    (run / rundir.CHECKPOINT).write_bytes(b"")
    train(cfg)
    same_run(run, reference)
    meta = json.loads((run / rundir.META).read_text())
    [recovery] = meta["checkpoint_recoveries"]
    assert recovery["action"] == f"resumed from {rundir.PREVIOUS_CHECKPOINT}"
    assert recovery["unusable"][0]["file"] == rundir.CHECKPOINT
    assert (Path(recovery["moved_to"]) / rundir.CHECKPOINT).stat().st_size == 0, "kept aside"


def test_with_no_readable_checkpoint_the_cell_restarts_from_scratch(tmp_path, reference):
    cfg = tiny(tmp_path)
    train(cfg)
    run = run_dir(cfg)
    _unfinish(run)
    (run / rundir.CHECKPOINT).write_bytes(b"")
    with open(run / rundir.PREVIOUS_CHECKPOINT, "r+b") as f:
        f.truncate(100)  # cut: not a zip archive any more
    assert engine_main(to_argv(cfg)) == 0
    same_run(run, reference)
    [recovery] = json.loads((run / rundir.META).read_text())["checkpoint_recoveries"]
    assert "restarted from scratch" in recovery["action"]
    assert sorted(u["file"] for u in recovery["unusable"]) == sorted(
        [rundir.CHECKPOINT, rundir.PREVIOUS_CHECKPOINT])


def test_stale_temporary_files_are_removed_when_a_cell_starts(tmp_path, reference):
    cfg = tiny(tmp_path)
    train(cfg)
    run = run_dir(cfg)
    _unfinish(run)
    for name in (".checkpoint.pt.tmp4242", ".meta.json.tmp4242", ".metrics.jsonl.tmp1"):
        (run / name).write_bytes(b"x" * 1000)
    train(cfg)
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]
    same_run(run, reference)


# --------------------------------------------------------------------------- exclusive cells


def test_a_second_engine_on_a_held_cell_exits_at_once_and_writes_nothing(tmp_path, capsys):
    cfg = tiny(tmp_path)
    path = run_dir(cfg)
    path.mkdir(parents=True)
    rundir.acquire_lock(path / rundir.LOCK, rundir.owner())  # the first engine: this process
    before = snapshot(path)
    assert engine_main(to_argv(cfg)) == EXIT_BUSY
    err = capsys.readouterr().err
    assert "busy" in err and f"pid {os.getpid()}" in err and len(err.strip().splitlines()) == 1
    assert snapshot(path) == before


def test_two_engine_processes_on_one_cell(tmp_path):
    cfg = tiny(tmp_path, epochs=200, steps_per_epoch=None)
    path = run_dir(cfg)
    first = engine_cli(to_argv(cfg))
    try:
        deadline = time.monotonic() + 120
        while not (path / rundir.METRICS).exists():
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "the first engine did not start"
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "benchmarks", *to_argv(cfg)], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == EXIT_BUSY, second.stderr
        assert "busy" in second.stderr and f"pid {first.pid}" in second.stderr
    finally:
        first.kill()
        first.communicate()  # reaps it and closes its output pipe
    lock = rundir.read_lock(path / rundir.LOCK)
    assert lock["pid"] == first.pid and not rundir.lock_alive(lock), "a killed engine's lock is stale"


def test_concurrent_launches_start_each_cell_once(tmp_path):
    module = tmp_path / "exps.py"
    module.write_text(EXPERIMENTS)
    runs = tmp_path / "runs"
    argv = [sys.executable, "-m", "slurm", "launch", "two", "--executor", "local",
            "--experiments-module", str(module), "--runs-dir", str(runs)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}  # no sbatch, no squeue
    launches = [subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300)[0] for p in launches]
    assert all(p.returncode == 0 for p in launches), outs
    assert sum("started local runner" in out for out in outs) == 1, outs
    assert sum("nothing to launch (2 pending)" in out for out in outs) == 2, outs
    specs = list((runs / "two" / rundir.SWEEP).glob("local-*.json"))
    assert len(specs) == 1 and len(json.loads(specs[0].read_text())["cells"]) == 2


# --------------------------------------------------------------------------- write failures


def test_an_unwritable_runs_dir_is_bad_input_for_every_command(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    runs = blocker / "runs"  # cannot be created: its parent is a file
    cfg = tiny(runs)
    assert engine_main(to_argv(cfg)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not writable" in err and str(blocker) in err

    assert slurm_cli.main(["launch", "demo", "--executor", "local", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not writable" in err

    from results.cli import main as results_main
    assert results_main(["demo", "--runs-dir", str(tmp_path), "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--out" in err and "not writable" in err


@pytest.fixture
def read_only_folder(tmp_path):
    """A read-only file system (a tmpfs mounted ro); skips where mounting is not allowed."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mount.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_runs_dir_is_one_line_and_exit_2(read_only_folder):
    cfg = tiny(read_only_folder / "runs")
    out = subprocess.run([sys.executable, "-m", "benchmarks", *to_argv(cfg)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == EXIT_BAD_INPUT
    assert len(out.stderr.strip().splitlines()) == 1 and "Read-only file system" in out.stderr


def test_a_disk_that_fills_mid_run_ends_in_one_line_and_the_cell_resumes(tmp_path, reference):
    """A real full disk: a tmpfs with room for two checkpoints, not for a third
    (the new one is written beside checkpoint.pt and checkpoint.prev.pt)."""
    folder = tmp_path / "small"
    folder.mkdir()
    size = 2.5 * (reference / rundir.CHECKPOINT).stat().st_size + 32 * 1024
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size) // 4096 * 4096}",
                            "tmpfs", str(folder)], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mount.stderr.strip()}")
    try:
        cfg = tiny(folder / "runs")
        run = run_dir(cfg)
        argv = [sys.executable, "-m", "benchmarks", *to_argv(cfg)]
        out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert out.returncode == EXIT_FAILED, out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"cannot write {run / rundir.CHECKPOINT}" in out.stderr and "ENOSPC" in out.stderr
        assert json.loads((run / rundir.ERROR).read_text())["errno"] == errno.ENOSPC
        assert not [p.name for p in run.iterdir() if ".tmp" in p.name]
        subprocess.run(["mount", "-o", "remount,size=16m", str(folder)], check=True)  # space freed
        out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert "resuming" in out.stdout
        same_run(run, reference)
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_write_failure_mid_run_is_one_line_and_the_relaunch_resumes_exactly(
        tmp_path, reference, monkeypatch, capsys, code):
    cfg = tiny(tmp_path)
    run = run_dir(cfg)
    real, calls = rundir._write_synced, []

    def failing(path, data):  # the second epoch's checkpoint hits a full (or read-only) disk
        calls.append(path.name)
        if path.name.startswith(f".{rundir.CHECKPOINT}") and calls.count(path.name) == 2:
            with open(path, "wb") as f:
                f.write(bytes(data)[:1000])  # half a file, as a real ENOSPC leaves
            raise OSError(code, os.strerror(code))
        real(path, data)

    monkeypatch.setattr(rundir, "_write_synced", failing)
    assert engine_main(to_argv(cfg)) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(run / rundir.CHECKPOINT) in err and errno.errorcode[code] in err
    error = json.loads((run / rundir.ERROR).read_text())
    assert error["errno"] == code and error["file"] == str(run / rundir.CHECKPOINT)
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name], "a half file stayed on disk"
    assert sweep.cell_states([cfg], cfg.experiment)[0].state == "failed"

    monkeypatch.setattr(rundir, "_write_synced", real)  # space freed
    assert engine_main(to_argv(cfg)) == 0
    same_run(run, reference)


# --------------------------------------------------------------------------- threads and meta


def test_threads_are_pinned_recorded_and_not_part_of_the_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    cfg = tiny(tmp_path, threads=2, epochs=1)
    assert cell_id(cfg) == cell_id(dataclasses.replace(cfg, threads=1)), "threads is a location"
    assert TrainConfig("digits").threads == 1 and TrainConfig("cifar").threads == 4
    before = torch.get_num_threads()
    try:
        train(cfg)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    meta = json.loads((run_dir(cfg) / rundir.META).read_text())
    assert meta["threads"]["intra_op"] == 2
    start = meta["starts"][-1]
    assert (start["slurm_job_id"], start["slurm_restart_count"]) == ("123", 2)
    # Per start, for the report: a run resumed by another commit of the suite shows it.
    assert (start["git_commit"], start["device"]) == (rundir.git_commit(), "cpu")
    assert start["git_commit"] is None or len(start["git_commit"]) == 40
    assert "threads" not in cell_fields(cfg)


def test_both_executors_give_the_engine_the_cells_threads():
    from slurm.job import CellJob, engine_env

    assert engine_env(threads=3)["OMP_NUM_THREADS"] == "3"
    assert CellJob(["digits"], "/nowhere", threads=3).threads == 3
