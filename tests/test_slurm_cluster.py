"""slurm/ on a real single-node Slurm cluster (`make slurm-up`): job arrays,
relaunch, `scontrol requeue`, time limits, failures and retry, and the
partition checks that run before anything is submitted."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import skip_or_fail, slurm_node_busy
from slurm import cli, sweep
from test_slurm_local import metric_epochs, statuses, wait_until, write_experiments

pytestmark = pytest.mark.slurm


@pytest.fixture
def sweep_env(tmp_path, slurm_cluster):
    return write_experiments(tmp_path, long_epochs=20), tmp_path / "runs"


def run_cli(capsys, module, runs, *argv):
    code = cli.main([*argv, "--executor", "slurm", "--experiments-module", str(module), "--runs-dir", str(runs)])
    out = capsys.readouterr()
    return code, out.out + out.err


def queue_of(jobs) -> dict[str, list[str]]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r"], capture_output=True, text=True, check=True)
    rows = [line.split("|") for line in out.stdout.splitlines()]
    return {r[0]: r[1:] for r in rows if r[0] in jobs}


class RequeueRelease:
    """Starts requeued jobs now instead of at their BeginTime (Slurm holds a requeued job
    ~2 minutes). Not the instant it shows as held: released within the same ~0.1 s as
    the requeue, Slurm may start the job while the previous run's credential is still
    being revoked, and kills it ("non-startable batch job: Job credential revoked")."""

    GRACE_S = 3.0

    def __init__(self, jobs) -> None:
        self.jobs, self.held_since = set(jobs), {}

    def __call__(self) -> None:
        now = time.monotonic()
        for job, (state, reason) in queue_of(self.jobs).items():
            if state != "PENDING" or reason != "BeginTime":
                self.held_since.pop(job, None)
            elif now - self.held_since.setdefault(job, now) >= self.GRACE_S:
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False)


def settle(module, runs, name, timeout_s=240) -> list:
    """Wait until no cell of ``name`` is queued or running (requeued jobs released)."""
    release = RequeueRelease(sweep.read_jobs(runs / name / ".sweep").values())

    def quiet():
        release()
        return not any(s.state in sweep.ACTIVE for s in statuses(module, runs, name))

    wait_while_free(quiet, timeout_s, f"the cells of {name!r} to settle", runs / name)
    return statuses(module, runs, name)


def wait_while_free(predicate, timeout_s, what, experiment_dir) -> None:
    """`wait_until`; a timeout on a node that others' jobs took meanwhile skips, saying so."""
    try:
        wait_until(predicate, timeout_s, what)
    except AssertionError:
        reason = slurm_node_busy(ours=set(sweep.read_jobs(experiment_dir / ".sweep").values()))
        if reason is not None:
            skip_or_fail(f"timed out waiting for {what}: {reason}")
        raise


def job_ids(path) -> list[str]:
    return json.loads((path / "meta.json").read_text())["slurm_job_ids"]


def test_launch_runs_each_cell_once_as_a_job_array_and_relaunch_submits_nothing(capsys, sweep_env, slurm_node_free):
    module, runs = sweep_env
    code, out = run_cli(capsys, module, runs, "launch", "tiny", "--time", "5")
    assert code == 0 and "submitted job array" in out and "2 cell(s) submitted" in out, out
    cells = settle(module, runs, "tiny")
    assert [c.state for c in cells] == ["done", "done"]
    ledger = sweep.read_jobs(runs / "tiny" / ".sweep")
    for c in cells:
        assert job_ids(c.path) == [ledger[c.cell]]  # one job worked on it, the array task we submitted
        assert metric_epochs(c.path) == [1, 2]
    code, out = run_cli(capsys, module, runs, "launch", "tiny", "--time", "5")
    assert code == 0 and "nothing to launch (2 done)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cpus", "999"], "--cpus 999: the nodes of partition 'debug' have at most"),
        (["--gpus", "1"], "--gpus 1: the nodes of partition 'debug' have no GPUs"),
        (["--partition", "nosuchpart"], "--partition nosuchpart"),
        (["--time", "1", "--signal-delay", "40"], "Slurm may signal the job before it has started"),
    ],
)
def test_resources_the_partition_cannot_give_are_refused_before_submitting(capsys, sweep_env, argv, message):
    module, runs = sweep_env
    code, out = run_cli(capsys, module, runs, "launch", "tiny", *argv)
    assert code == 2 and message in out, out
    assert not (runs / "tiny" / ".sweep" / "jobs.jsonl").exists()


# Two tasks: one cell data-parallel over two CPU processes of one job (gloo).
TWO_TASKS = ["--tasks-per-node", "2", "--cpus", "1"]


@pytest.mark.parametrize("tasks", [1, 2])
def test_scontrol_requeue_resumes_the_cell_from_its_checkpoint(capsys, sweep_env, slurm_node_free, tasks):
    """`scontrol requeue` stops every rank at the same step; the same job restarts,
    resumes from rank 0's checkpoint and finishes with one result."""
    module, runs = sweep_env
    code, out = run_cli(capsys, module, runs, "launch", "long", "--time", "10",
                        *(TWO_TASKS if tasks == 2 else []))
    assert code == 0 and (tasks == 1 or "nodes=1 tasks/node=2 gpus=0 cpus=1" in out), out
    [cell] = statuses(module, runs, "long")
    job = sweep.read_jobs(runs / "long" / ".sweep")[cell.cell]
    wait_while_free(lambda: (cell.path / "metrics.jsonl").exists(), 120, "the first epoch", runs / "long")
    subprocess.run(["scontrol", "requeue", job], check=True)
    [cell] = settle(module, runs, "long")
    assert cell.state == "done"
    assert job_ids(cell.path) == [job, job], "the cell should have been started twice, by the same job"
    assert metric_epochs(cell.path) == list(range(1, 21)), "epochs repeated or lost across the requeue"
    assert json.loads((cell.path / "meta.json").read_text())["world_size"] == tasks
    logs = "".join(p.read_text() for p in (runs / "long" / ".sweep" / "submitit").rglob("*_log.out"))
    assert logs.count("resuming ") == 1, "rank 0 alone reports the resume, once"
    assert logs.count("run directory: ") == 2, "rank 0 alone writes the run directory, once per start"


@pytest.mark.slow
@pytest.mark.parametrize("tasks", [1, 2])
def test_a_time_limit_checkpoints_requeues_and_resumes(capsys, tmp_path, slurm_node_free, tasks):
    module, runs = write_experiments(tmp_path, long_epochs=1000), tmp_path / "runs"
    # Two minutes, signalled 30 s before the end; Slurm may signal up to a minute
    # early, so the signal comes 30 to 90 s in. The cell needs far longer: the job
    # times out, checkpoints, is requeued and resumes; the test stops it there.
    code, out = run_cli(capsys, module, runs, "launch", "long", "--time", "2", "--signal-delay", "30",
                        *(TWO_TASKS if tasks == 2 else []))
    assert code == 0, out
    [cell] = statuses(module, runs, "long")
    job = sweep.read_jobs(runs / "long" / ".sweep")[cell.cell]

    release = RequeueRelease({job})

    def resumed():
        release()
        meta = cell.path / "meta.json"
        return meta.exists() and len(job_ids(cell.path)) >= 2 and metric_epochs(cell.path)

    try:
        wait_while_free(resumed, 240, "a timeout, a requeue and a restart", runs / "long")
        before = len(metric_epochs(cell.path))
        wait_while_free(lambda: len(metric_epochs(cell.path)) > before, 60, "an epoch after the restart",
                        runs / "long")
    finally:
        subprocess.run(["scancel", job], check=False)
    epochs = metric_epochs(cell.path)
    assert epochs == list(range(1, len(epochs) + 1)), f"epochs repeated or lost across the timeout: {epochs}"
    logs = "".join(p.read_text() for p in (runs / "long" / ".sweep" / "submitit").rglob("*_log.*"))
    assert "timed-out" in logs and "Requeued job" in logs
    meta = json.loads((cell.path / "meta.json").read_text())
    # The engine stopped at a step boundary and said so (not killed at Slurm's limit).
    assert meta["world_size"] == tasks and meta.get("stops"), meta
    if tasks == 2:  # rank 0's task alone requeues; the other's engine stops with it
        assert "Not checkpointing nor requeuing since I am a slave" in logs


def test_failed_cell_shows_failed_and_retry_resubmits_only_it(capsys, sweep_env, slurm_node_free):
    module, runs = sweep_env
    code, out = run_cli(capsys, module, runs, "launch", "fail", "--time", "5")
    assert code == 0, out
    by_lr = {c.cfg.lr: c for c in settle(module, runs, "fail")}
    good, bad = by_lr[0.05], by_lr[1e30]
    assert (good.state, bad.state) == ("done", "failed")
    first_error = (bad.path / "error.json").stat().st_mtime_ns
    code, out = run_cli(capsys, module, runs, "retry", "fail", "--time", "5")
    assert code == 0 and "1 cell(s) submitted" in out and bad.cell in out and good.cell not in out, out
    by_lr = {c.cfg.lr: c for c in settle(module, runs, "fail")}
    assert (by_lr[0.05].state, by_lr[1e30].state) == ("done", "failed")
    assert (bad.path / "error.json").stat().st_mtime_ns > first_error
    assert len(job_ids(good.path)) == 1


def test_a_cell_the_engine_rejects_records_the_engines_reason(capsys, sweep_env, slurm_node_free):
    """Exit 2 writes nothing by design; the job's supervisor takes the engine's line from the job's log."""
    module, runs = sweep_env
    code, out = run_cli(capsys, module, runs, "launch", "reject", "--time", "5")
    assert code == 0, out
    [cell] = settle(module, runs, "reject")
    assert cell.state == "failed"
    error = json.loads((cell.path / "error.json").read_text())
    assert error["type"] == "BadInput", error
    assert error["message"].startswith("--batch-size=4096 exceeds the 1347 training samples (the engine's output: ")
    assert "_log.err" in error["message"], error["message"]


def test_a_cell_gives_identical_metrics_locally_directly_and_on_slurm(capsys, tmp_path, slurm_cluster, slurm_node_free):
    """One answer per cell: the engine pins its threads (--threads, 1 for digits), so a
    demo-like digits cell run by the local executor, by a bare `python -m benchmarks`
    (no OMP_NUM_THREADS, as a user types it) and by a Slurm job with two CPUs gives
    bit-identical metrics."""
    import dataclasses
    import os
    import sys

    from benchmarks.config import run_dir, to_argv
    from bench_fixtures import read_metrics, read_result

    module = write_experiments(tmp_path, long_epochs=2)  # full digits epochs, batch 32
    on_slurm, local, direct = tmp_path / "slurm", tmp_path / "local", tmp_path / "direct"
    code, out = run_cli(capsys, module, on_slurm, "launch", "long", "--time", "5", "--cpus", "2")
    assert code == 0, out
    [slurm_cell] = settle(module, on_slurm, "long")
    assert slurm_cell.state == "done"
    code = cli.main(["launch", "long", "--executor", "local", "--wait",
                     "--experiments-module", str(module), "--runs-dir", str(local)])
    assert code == 0
    cfg = dataclasses.replace(slurm_cell.cfg, runs_dir=str(direct))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    subprocess.run([sys.executable, "-m", "benchmarks", *to_argv(cfg)], env=env, check=True,
                   capture_output=True)
    runs = [slurm_cell.path, run_dir(dataclasses.replace(cfg, runs_dir=str(local))), run_dir(cfg)]
    metrics = [read_metrics(r) for r in runs]
    results = [read_result(r) for r in runs]
    assert metrics[0] == metrics[1] == metrics[2]
    assert results[0] == results[1] == results[2]
    threads = [json.loads((r / "meta.json").read_text())["threads"]["intra_op"] for r in runs]
    assert threads == [1, 1, 1]


def test_concurrent_launches_submit_each_cell_once(tmp_path, slurm_cluster, slurm_node_free):
    import os
    import sys

    module, runs = write_experiments(tmp_path), tmp_path / "runs"
    root = Path(__file__).resolve().parent.parent
    argv = [sys.executable, "-m", "slurm", "launch", "tiny", "--executor", "slurm", "--time", "5",
            "--experiments-module", str(module), "--runs-dir", str(runs)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    launches = [subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300)[0] for p in launches]
    assert all(p.returncode == 0 for p in launches), outs
    assert sum("2 cell(s) submitted" in out for out in outs) == 1, outs
    ledger = (runs / "tiny" / ".sweep" / "jobs.jsonl").read_text().splitlines()
    assert len(ledger) == 2, ledger
    cells = settle(module, runs, "tiny")
    assert [c.state for c in cells] == ["done", "done"]
    assert all(len(job_ids(c.path)) == 1 for c in cells)
