"""slurm/: the command line's planning, filters and bad-input errors, resource
parsing, lock files, and the job supervisor's signal handling (with a fake
engine). Nothing here trains a model or needs a cluster."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from benchmarks import rundir
from slurm import cli, job as job_mod, sweep
from slurm.job import CellFailed, CellJob
from slurm.resources import Partition, Resources, check_fits, parse_mem_gb, parse_minutes
from slurm.sweep import SweepError
from bench_fixtures import fake_result


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_cifar10_lists_the_full_grid_without_data(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "plan", "cifar10", "--runs-dir", str(tmp_path), "--data-dir", str(tmp_path / "none"))
    assert code == 0
    assert "60 cells: 60 not launched" in out
    lines = [line for line in out.splitlines() if re.match(r"[0-9a-f]{12}  .*not launched$", line)]
    assert len(lines) == 60
    header = out.splitlines()[1].split()
    assert header[:3] == ["cell", "model", "optimizer"] and "seed" in header and header[-1] == "state"
    assert not any(tmp_path.iterdir()), "plan wrote something"


def test_plan_shows_states_from_run_directories(capsys, tmp_path):
    from benchmarks.config import run_dir
    from benchmarks.experiments import get

    cells = sweep.relocate(get("demo").cells, str(tmp_path), None)
    done, failed, stopped, locked, stale = (run_dir(c) for c in cells[:5])
    for d in (done, failed, stopped, locked, stale):
        d.mkdir(parents=True)
    (done / rundir.CONFIG).write_text(json.dumps(dataclasses.asdict(cells[0])))
    (done / rundir.RESULT).write_text(json.dumps(fake_result(90.0, 91.0)))
    (failed / rundir.ERROR).write_text("{}")
    (stopped / rundir.CHECKPOINT).write_bytes(b"")
    rundir.acquire_lock(locked / rundir.LOCK, rundir.owner())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rundir.acquire_lock(stale / rundir.LOCK, rundir.owner(pid=dead.pid))  # a dead pid: stale
    code, out, _ = run_cli(capsys, "plan", "demo", "--runs-dir", str(tmp_path))
    assert code == 0
    states = {line.split()[0]: line for line in out.splitlines()[3:18]}
    assert states[done.name].endswith("done") and states[failed.name].endswith("failed")
    assert states[stopped.name].endswith("stopped") and states[locked.name].endswith("running")
    assert states[stale.name].endswith("not launched")
    assert "15 cells: 1 done, 1 running, 1 failed, 1 stopped, 11 not launched" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["plan", "cifar-10"], "unknown experiment 'cifar-10'; known experiments: cifar10, cifar100"),
        (["plan", "demo", "--only", "optimiser=sam"], "unknown field 'optimiser'; valid fields: adam_beta1"),
        (["plan", "demo", "--only", "seed=7"], "--only seed=7: no cell of this experiment matches"),
        (["plan", "demo", "--only", "seed=one"], "'one' is not a valid int"),
        (["plan", "demo", "--only", "seed"], "expected KEY=VALUE"),
        (["launch", "demo", "--executor", "local", "--parallel", "0"], "--parallel 0: must be at least 1"),
        (["launch", "demo", "--executor", "local", "--time", "soon"], "--time 'soon'"),
        (["plan", "demo", "--experiments-module", "no_such_module_xyz"], "cannot import it"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(capsys, tmp_path, argv, message):
    code, out, err = run_cli(capsys, *argv, "--runs-dir", str(tmp_path))
    assert code == 2 and message in err, err
    assert not any(tmp_path.iterdir())


def test_filters_parse_to_the_field_type_and_same_key_means_or(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "plan", "cifar10", "--runs-dir", str(tmp_path),
                           "--only", "optimizer=sam", "--only", "optimizer=vasso",
                           "--only", "rho=0.1", "--only", "seed=2")
    assert code == 0 and "4 cells: 4 not launched" in out  # {resnet18, wrn28_10} x {sam, vasso}
    assert sweep.parse_filters(["label_noise=0.5", "gsam_rho_min=none", "nesterov=false"]) == {
        "label_noise": [0.5], "gsam_rho_min": [None], "nesterov": [False]}


def test_executor_slurm_without_sbatch_fails_before_anything(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    code, _, err = run_cli(capsys, "launch", "demo", "--executor", "slurm", "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and "`sbatch` is not on PATH" in err and "--executor local" in err
    assert not (tmp_path / "runs").exists()
    assert cli._executor(cli.build_parser().parse_args(["plan", "x"])) == "local"


def test_experiments_module_from_a_file(capsys, tmp_path):
    module = tmp_path / "my_experiments.py"
    module.write_text(textwrap.dedent("""
        from benchmarks.experiments import Experiment, grid
        EXPERIMENTS = {"mine": Experiment("mine", "Mine", grid(
            {"task": "digits", "experiment": "mine"}, optimizer=["sgd", "sam"], seed=[0, 1]))}
    """))
    code, out, _ = run_cli(capsys, "plan", "mine", "--experiments-module", str(module), "--runs-dir", str(tmp_path))
    assert code == 0 and "4 cells: 4 not launched" in out and "Mine" in out


def test_time_and_memory_parse_like_slurm():
    assert [parse_minutes(t) for t in ("90", "1:30:00", "2-00:00:00", "5:30", "1-12")] == [90, 90, 2880, 6, 2160]
    assert [parse_mem_gb(m) for m in ("16", "16G", "16GB", "512M", "1T")] == [16, 16, 16, 1, 1024]
    for bad in ("0", "abc"):
        with pytest.raises(SweepError):
            parse_minutes(bad)


def test_partition_checks_name_the_limit_and_the_fix():
    part = Partition("debug", max_cpus=2, max_mem_mb=20000, max_gpus=0, max_time_min=60)
    check_fits(part, [Resources(gpus=0, cpus=2, mem_gb=8, time_min=60)])
    cases = [
        (Resources(0, 999, 2, 10), "--cpus 999: the nodes of partition 'debug' have at most 2 CPUs"),
        (Resources(1, 1, 2, 10), "--gpus 1: the nodes of partition 'debug' have no GPUs"),
        (Resources(0, 1, 64, 10), "--mem 64G"),
        (Resources(0, 1, 2, 120), "allows at most 01:00:00"),
    ]
    for res, message in cases:
        with pytest.raises(SweepError, match=message.replace("(", r"\(")):
            check_fits(part, [res])


# --------------------------------------------------------------------------- the job supervisor

FAKE_ENGINE = textwrap.dedent("""
    import json, signal, sys, time, pathlib
    run = pathlib.Path(sys.argv[1]); mode = sys.argv[2]
    def stop(signum, frame):
        (run / "stopped").write_text(str(signum)); sys.exit(75)
    signal.signal(signal.SIGTERM, stop)
    if mode == "done":
        (run / "result.json").write_text(json.dumps({"primary": "acc", "final": {"test": {"acc": 50.0}}, "best": {"test": {"acc": 51.0}}})); sys.exit(0)
    if mode == "fail":
        (run / "error.json").write_text(json.dumps({"type": "FloatingPointError", "message": "loss is nan"}))
        sys.exit(1)
    if mode == "crash":
        sys.exit(4)
    (run / "ready").write_text("")
    time.sleep(60)
""")


@pytest.fixture
def fake_engine(tmp_path, monkeypatch):
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE)
    monkeypatch.setattr(job_mod, "engine_command", lambda argv, python=None: [sys.executable, str(script), *argv])
    return tmp_path


def test_job_returns_the_result_or_names_error_json(fake_engine):
    assert CellJob([str(fake_engine), "done"], str(fake_engine), poll_s=0.05)() == {
        "primary": "acc", "final": {"test": {"acc": 50.0}}, "best": {"test": {"acc": 51.0}}}
    with pytest.raises(CellFailed, match=r"error\.json\).*FloatingPointError: loss is nan"):
        CellJob([str(fake_engine), "fail"], str(fake_engine), poll_s=0.05)()


def test_checkpoint_stops_the_child_and_resubmits_the_same_job(fake_engine):
    job = CellJob([str(fake_engine), "wait"], str(fake_engine), poll_s=0.05)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", job()))
    runner.start()
    deadline = time.monotonic() + 30
    while not (fake_engine / "ready").exists():
        assert time.monotonic() < deadline, "the fake engine did not start"
        time.sleep(0.05)
    delayed = job.checkpoint()  # what submitit's SIGUSR2 handler calls
    assert (fake_engine / "stopped").read_text() == str(int(signal.SIGTERM))
    assert job._returncode == 75
    runner.join(timeout=10)
    assert not runner.is_alive() and outcome["result"] is None  # exit 75 without a signal: just return
    assert delayed.function is job and delayed.args == ()
    restored = pickle.loads(pickle.dumps(delayed.function))
    assert restored.argv == job.argv and restored._proc is None and restored._returncode is None


def test_an_engine_that_dies_silently_leaves_a_failed_cell(fake_engine):
    with pytest.raises(CellFailed, match="exit code 4"):
        CellJob([str(fake_engine), "crash"], str(fake_engine / "cell"), poll_s=0.05)()
    error = json.loads((fake_engine / "cell" / "error.json").read_text())
    assert error["exit_code"] == 4 and error["written_by"] == "slurm"


def test_local_launch_leaves_alone_cells_that_a_slurm_job_holds(capsys, tmp_path, monkeypatch):
    """A cell queued on Slurm is held whatever executor the next launch uses:
    launching it locally too would train it twice in one run directory."""
    from benchmarks.config import cell_id
    from benchmarks.experiments import get

    cells = sweep.relocate(get("demo").cells, str(tmp_path), None)
    held = {cell_id(c): f"77_{i}" for i, c in enumerate(cells)}
    sweep.record_jobs(sweep.sweep_dir(cells, "demo"), "slurm", held)
    monkeypatch.setattr(sweep, "scheduler_queue", lambda: {job: "PENDING" for job in held.values()})
    for executor in ("local", "debug"):
        code, out, _ = run_cli(capsys, "launch", "demo", "--executor", executor, "--runs-dir", str(tmp_path))
        assert code == 0 and "nothing to launch (15 pending)" in out, out
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [".sweep"], "a held cell was started"


def test_local_parallelism_is_sized_by_the_class_with_most_cpus():
    """Resources order by GPUs first; the local default must divide the cores by the largest CPU request.
    Each engine gets the cell's own --threads, not its class's CPUs (one answer per cell)."""
    from benchmarks.experiments import get

    [a, b] = [sweep.CellStatus(cfg, f"cell{i}", Path("/nowhere"), sweep.NOT_LAUNCHED)
              for i, cfg in enumerate(get("demo").cells[:2])]
    classes = {Resources(gpus=1, cpus=1, mem_gb=2, time_min=30): [a], Resources(gpus=0, cpus=4, mem_gb=2, time_min=30): [b]}
    cells, cpus = cli._local_cells(classes, ["seed"])
    assert cpus == 4 and [c.threads for c in cells] == [a.cfg.threads, b.cfg.threads] == [1, 1]


@pytest.mark.parametrize("command", ["status", "retry", "collect"])
def test_a_runs_dir_that_does_not_exist_is_an_error_but_for_launch_and_its_dry_run(capsys, tmp_path, command):
    absent = tmp_path / "nonexistent"
    code, out, err = run_cli(capsys, command, "demo", "--runs-dir", str(absent), "--executor", "local")
    assert code == 2 and out == "", out
    assert err.splitlines() == [f"error: runs dir {absent} (--runs-dir) does not exist: nothing was launched "
                                "there; check the path, or `python -m slurm launch demo` first"]
    code, out, _ = run_cli(capsys, "plan", "demo", "--runs-dir", str(absent))
    assert code == 0 and f"(runs dir {absent} does not exist yet" in out
    assert not absent.exists()


def test_plan_shows_each_cells_resources_with_the_overrides(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "plan", "cifar10", "--runs-dir", str(tmp_path), "--only", "seed=0")
    assert code == 0 and out.splitlines()[1].split()[-2:] == ["resources", "state"]
    cells = [line for line in out.splitlines() if re.match(r"[0-9a-f]{12}  ", line)]
    assert len(cells) == 20 and all("gpus=1 cpus=8 mem=32G time=12:00:00" in line for line in cells)
    code, out, _ = run_cli(capsys, "plan", "cifar10", "--runs-dir", str(tmp_path), "--only", "seed=0",
                           "--gpus", "2", "--time", "90")
    assert code == 0 and "gpus=2 cpus=8 mem=32G time=01:30:00" in out


def test_retry_names_the_stopped_cells_and_the_command_that_resumes_them(capsys, tmp_path):
    from benchmarks.config import run_dir
    from benchmarks.experiments import get

    cells = sweep.relocate(get("demo").cells, str(tmp_path), None)
    (tmp_path / "demo").mkdir()
    stopped = run_dir(cells[3])
    stopped.mkdir()
    (stopped / rundir.CONFIG).write_text(json.dumps(dataclasses.asdict(cells[3])))
    code, out, _ = run_cli(capsys, "retry", "demo", "--runs-dir", str(tmp_path), "--executor", "local")
    assert code == 0
    assert (f"1 stopped cell(s), not retried: `python -m slurm launch demo --executor local --runs-dir {tmp_path}` "
            "resumes them from their checkpoints") in out, out
    assert re.search(rf"^  {stopped.name}  .*stopped$", out, flags=re.M), out
    assert "demo: nothing to retry (1 stopped, 14 not launched)" in out


def test_launch_checks_every_cells_data_before_starting_anything(capsys, tmp_path):
    runs, data = tmp_path / "runs", tmp_path / "data"
    for executor in ("local", "debug"):
        code, out, err = run_cli(capsys, "launch", "cifar10", "--executor", executor,
                                 "--runs-dir", str(runs), "--data-dir", str(data))
        assert code == 2 and out == "", out
        [line] = err.splitlines()
        assert line.startswith(f"error: cifar10 not found: {data / 'cifar-10-batches-py'} lacks data_batch_1")
        assert line.endswith("pass --data-dir where it is; nothing was started")
    assert not runs.exists(), "a launch without data started something"


def test_an_engines_bad_input_message_reaches_the_cells_error_json(tmp_path):
    """A cell that the engine rejects (exit 2, nothing written by design) shows the engine's own reason."""
    from benchmarks.config import TrainConfig, to_argv
    from slurm.local import LocalCell, run_cells

    cfg = TrainConfig("cifar", runs_dir=str(tmp_path / "runs"), data_dir=str(tmp_path / "data"), device="cpu")
    cell = LocalCell("c1", "c1", to_argv(cfg), str(tmp_path / "runs" / "c1"))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "c1.log").write_text("python -m benchmarks: error: an older start's reason\n")
    codes = run_cells([cell], 1, tmp_path / "logs", say=lambda line: None)
    assert codes == {"c1": 2}
    error = json.loads((tmp_path / "runs" / "c1" / "error.json").read_text())
    assert error["type"] == "BadInput" and error["exit_code"] == 2
    assert error["message"].startswith(f"cifar10 not found: {tmp_path / 'data' / 'cifar-10-batches-py'} lacks")
    assert "older start" not in error["message"] and str(tmp_path / "logs" / "c1.log") in error["message"]


def test_an_unknown_command_is_one_line_naming_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exc_info:
        cli.main(["plam", "demo"])
    assert exc_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("python -m slurm: error: argument command: invalid choice")
    assert all(c in line for c in ("plan", "launch", "status", "retry", "collect")), line


def fake_slurm(folder: Path, cpus: str, queue: str) -> str:
    """A PATH whose sinfo and squeue print `cpus` (A/I/O/T) and `queue` (id|state|user|name lines)."""
    folder.mkdir()
    for name, text in (("sinfo", cpus), ("squeue", queue)):
        (folder / name).write_text(f"#!/bin/sh\nprintf '%s' '{text}'\n")
        (folder / name).chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


@pytest.mark.parametrize("cpus, queue, ours, busy", [
    ("0/2/0/2\n", "", set(), None),
    ("1/1/0/2\n", "7_0|RUNNING|ann|vasso-tiny\n", {"7_0"}, None),  # the test's own job
    ("1/1/0/2\n", "7_0|RUNNING|ann|vasso-tiny\n", set(), "1 of 2 CPUs idle; squeue: 7_0 running (vasso-tiny, ann)"),
    ("2/0/0/2\n", "4|RUNNING|root|vasso-long\n", set(), "0 of 2 CPUs idle; squeue: 4 running (vasso-long, root)"),
    ("2/0/0/2\n", "4|RUNNING|root|a\n9|PENDING|bob|train\n", {"4"}, "0 of 2 CPUs idle; squeue: 9 pending (train, bob)"),
])
def test_slurm_tests_know_when_the_node_is_busy_and_say_so(tmp_path, monkeypatch, cpus, queue, ours, busy):
    """The Slurm tests skip on a node busy with others' jobs (theirs would only queue), naming why;
    under VASSO_REQUIRE_SLURM=1 (CI, an idle cluster of its own) they fail instead."""
    import conftest

    monkeypatch.setenv("PATH", fake_slurm(tmp_path / "bin", cpus, queue))
    reason = conftest.slurm_node_busy(ours)
    if busy is None:
        assert reason is None
        return
    assert reason.startswith("the Slurm node is busy with other jobs: ") and busy in reason, reason
    monkeypatch.delenv("VASSO_REQUIRE_SLURM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="busy"):
        conftest.skip_or_fail(reason)
    monkeypatch.setenv("VASSO_REQUIRE_SLURM", "1")
    with pytest.raises(pytest.fail.Exception, match="VASSO_REQUIRE_SLURM=1"):
        conftest.skip_or_fail(reason)


def test_a_slurm_jobs_bad_input_reaches_error_json_and_the_jobs_failure(tmp_path, monkeypatch):
    """In a job the engine writes to the job's stderr file; its exit-2 line is what the cell records."""
    log = tmp_path / "42_0_log.err"
    log.write_text("python -m benchmarks: error: an earlier start's reason\n")
    monkeypatch.setattr(job_mod, "_submitit_stderr", lambda: log)
    line = "python -m benchmarks: error: --batch-size=4096 exceeds the 1347 training samples"
    monkeypatch.setattr(job_mod, "engine_command",
                        lambda argv, python=None: ["sh", "-c", f"echo '{line}' >> {log}; exit 2"])
    with pytest.raises(CellFailed, match="rejected the cell \\(exit 2\\): --batch-size=4096 exceeds"):
        CellJob(["digits"], str(tmp_path / "cell"), poll_s=0.05)()
    error = json.loads((tmp_path / "cell" / "error.json").read_text())
    assert error["type"] == "BadInput" and error["written_by"] == "slurm"
    assert error["message"] == f"--batch-size=4096 exceeds the 1347 training samples (the engine's output: {log})"
