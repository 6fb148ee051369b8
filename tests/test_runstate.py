"""benchmarks.runstate: the one reading of locks and the job ledger that slurm/ and results/ share."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from benchmarks import runstate


def _lock(path, content: str) -> None:
    (path / runstate.LOCK_NAME).write_text(content)


def test_a_lock_counts_only_while_its_process_lives(tmp_path):
    here = socket.gethostname()
    _lock(tmp_path, json.dumps({"pid": os.getpid(), "host": here, "state": "pending"}))
    assert runstate.live_lock(tmp_path)["state"] == "pending"
    _lock(tmp_path, str(os.getpid()))  # a bare pid is a lock too
    assert runstate.live_lock(tmp_path) == {"pid": os.getpid()}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(tmp_path, json.dumps({"pid": dead.pid, "host": here}))
    assert runstate.live_lock(tmp_path) is None
    # No usable pid is no holder (os.kill(-1, 0) would "find" every process).
    for pid in (None, -1, 0, True, "12"):
        _lock(tmp_path, json.dumps({"pid": pid, "host": here}))
        assert runstate.live_lock(tmp_path) is None, pid
    _lock(tmp_path, json.dumps({"pid": dead.pid, "host": here + "-elsewhere"}))
    assert runstate.live_lock(tmp_path) is not None, "another host's lock cannot be checked: it counts"
    _lock(tmp_path, "{not json")
    assert runstate.read_lock(tmp_path) is None and runstate.live_lock(tmp_path) is None


def test_the_ledger_gives_each_cells_last_slurm_job(tmp_path):
    assert runstate.read_jobs(tmp_path) == {}
    lines = [{"cell": "a", "job_id": "10_0", "executor": "slurm"},
             {"cell": "b", "job_id": 4242, "executor": "local"},  # a pid, not a job
             {"cell": "a", "job_id": "11_0", "executor": "slurm"}]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"cell": "c", "job'  # cut by a crash
    (tmp_path / runstate.LEDGER_NAME).write_text(text)
    assert runstate.read_jobs(tmp_path) == {"a": "11_0"}
