"""benchmarks.rundir's locks and benchmarks.runstate's ledger: what slurm/ and results/ share."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from benchmarks import rundir, runstate


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_a_lock_counts_only_while_its_owner_lives():
    here, me = socket.gethostname(), os.getpid()
    assert rundir.lock_alive(rundir.owner())
    assert not rundir.lock_alive({"pid": _dead_pid(), "host": here})
    # A pid now used by another process (its start time differs) is not the owner.
    assert not rundir.lock_alive({"pid": me, "host": here, "process_start": "1"})
    # No usable pid is no holder (os.kill(-1, 0) would "find" every process).
    for pid in (None, -1, 0, True, "12"):
        assert not rundir.lock_alive({"pid": pid, "host": here}), pid
    elsewhere = {"pid": 1, "host": here + "-elsewhere"}
    assert rundir.lock_alive(elsewhere), "another host's lock without a job cannot be checked"
    job = {**elsewhere, "slurm_job_id": "77_1"}
    assert rundir.lock_alive(job, queue={"77_1": "RUNNING"})
    assert not rundir.lock_alive(job, queue={}), "its Slurm job has left the queue: stale"


def test_a_lock_is_exclusive_and_a_stale_one_is_taken_over(tmp_path):
    path = tmp_path / rundir.LOCK
    with rundir.locked(path) as mine:
        assert rundir.read_lock(path)["token"] == mine["token"]
        with pytest.raises(rundir.LockHeld, match=f"pid {os.getpid()}"):
            rundir.acquire_lock(path, rundir.owner())
    assert not path.exists(), "released"
    path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    with rundir.locked(path) as mine:  # the dead owner's lock is broken
        assert rundir.read_lock(path)["token"] == mine["token"]
    path.write_text("")  # an empty (damaged) lock names no owner: stale
    with rundir.locked(path):
        pass
    assert [p.name for p in tmp_path.iterdir()] == [], "no temporary file left behind"


def test_releasing_leaves_another_owners_lock_alone(tmp_path):
    path = tmp_path / rundir.LOCK
    theirs = rundir.owner()
    rundir.acquire_lock(path, theirs)
    rundir.release_lock(path, rundir.owner())
    assert rundir.read_lock(path)["token"] == theirs["token"]


def test_the_ledger_gives_each_cells_last_slurm_job(tmp_path):
    assert runstate.read_jobs(tmp_path) == {}
    lines = [{"cell": "a", "job_id": "10_0", "executor": "slurm"},
             {"cell": "b", "job_id": 4242, "executor": "local"},  # a pid, not a job
             {"cell": "a", "job_id": "11_0", "executor": "slurm"}]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"cell": "c", "job'  # cut by a crash
    (tmp_path / rundir.LEDGER).write_text(text)
    assert runstate.read_jobs(tmp_path) == {"a": "11_0"}


def test_a_requeued_job_takes_over_the_lock_of_its_earlier_start_on_another_node(tmp_path, monkeypatch):
    run = rundir.RunDir(tmp_path / "cell")
    run.path.mkdir()
    earlier = {"pid": 1, "host": "node-that-was-preempted", "slurm_job_id": "77_1", "token": "x"}
    (run.path / rundir.LOCK).write_text(json.dumps(earlier))
    monkeypatch.setattr(runstate, "scheduler_queue", lambda: {"77_1": "RUNNING"})
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(rundir.LockHeld):  # another job's engine, whose job still runs
        with run.lock():
            pass
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    with run.lock() as mine:  # the same job, started again: its earlier engine is gone
        assert rundir.read_lock(run.path / rundir.LOCK)["token"] == mine["token"]
