"""Damaged and foreign run directories: reported with their path and skipped, never a crash or a wrong number."""

from __future__ import annotations

import json
import socket

import pytest

from benchmarks import rundir
from benchmarks.config import cell_id, run_dir
from benchmarks.experiments import Experiment
from results.grid import collect, extended_labels
from results.render import markdown
from results.runs import load_test_curve
from test_results_fixtures import cifar_cell, write_config, write_done, write_metrics

NO_SLURM: dict[str, str] = {}


def three_seeds(root, **fields):
    return [cifar_cell(root, "robust", "resnet18", "vasso", seed, **fields) for seed in range(3)]


def collect_one_group(root, cells):
    grid = collect(Experiment("robust", "robustness", tuple(cells)), runs_dir=root, slurm_jobs=NO_SLURM)
    assert len(grid.groups) == 1
    return grid, grid.groups[0]


def test_truncated_last_metrics_line_is_reported_and_skipped(tmp_path):
    write_metrics(tmp_path, [50.0, 60.0, 70.0], truncate_last=True)
    curve, problems = load_test_curve(tmp_path)
    # The cut line was epoch 3's test line: epochs 1 and 2 survive, nothing is invented for 3.
    assert curve == {1: 50.0, 2: 60.0}
    assert len(problems) == 1
    assert problems[0].path == tmp_path / "metrics.jsonl"
    assert "truncated" in problems[0].message


def test_bad_line_inside_metrics_is_reported_by_number(tmp_path):
    write_metrics(tmp_path, [50.0, 60.0])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    lines[1] = '{"epoch": 1, "split": "test", "acc": '  # damaged, but followed by good lines
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    curve, problems = load_test_curve(tmp_path)
    assert curve == {2: 60.0}
    assert [p.message for p in problems] == ["line 2 is not valid JSON; skipped"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "result.json").write_text('{"final": {"test_acc": 9'), "not valid JSON"),
        (lambda d: (d / "result.json").write_text('{"primary": "acc", "final": {"test": {"acc": NaN}}}'),
         "no finite number"),
        (lambda d: (d / "result.json").write_text('{"primary": "acc", "final": {"test": {"loss": 0.1}}}'),
         "no finite number"),
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "config.json").unlink(), "without config.json"),
    ],
    ids=["result-not-json", "result-nan", "result-no-acc", "config-not-json", "config-absent"],
)
def test_damaged_files_drop_that_seed_only(tmp_path, damage, message):
    cells = three_seeds(tmp_path)
    for cfg, final in zip(cells, (90.0, 92.0, 10.0)):
        write_done(cfg, final)
    damage(run_dir(cells[2]))  # the seed whose 10.0 would drag the mean down
    grid, group = collect_one_group(tmp_path, cells)
    assert group.values == [90.0, 92.0]
    assert [run.state for run in group.runs] == ["done", "done", "invalid"]
    [problem] = grid.problems
    assert problem.path.parent == run_dir(cells[2]) and message in problem.message
    text = markdown(grid)
    assert "| vasso | 91.00 ± 1.41 (2/3) |" in text
    assert f"- {problem}" in text  # listed under the table with its path


def test_config_of_another_cell_is_never_averaged_in(tmp_path):
    cells = three_seeds(tmp_path)
    write_done(cells[0], 90.0)
    write_done(cells[1], 92.0)
    # A directory at seed 2's place whose config says rho=0.3: another cell's run.
    path = write_done(cells[2], 10.0)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "rho": 0.3}))
    grid, group = collect_one_group(tmp_path, cells)
    assert group.values == [90.0, 92.0]
    [problem] = grid.problems
    assert "rho: expected 0.05, found 0.3" in problem.message


def test_directory_without_result_is_stopped_not_counted(tmp_path):
    cells = three_seeds(tmp_path)
    write_done(cells[0], 90.0)
    path = write_config(cells[1])
    write_metrics(path, [40.0, 45.0])
    grid, group = collect_one_group(tmp_path, cells)
    assert [run.state for run in group.runs] == ["done", "stopped", "not launched"]
    assert group.values == [90.0] and group.std is None
    assert "| vasso | 90.00 (1/3) |" in markdown(grid)


def test_a_lock_of_a_dead_process_is_not_running(tmp_path):
    [cfg] = three_seeds(tmp_path)[:1]
    path = write_config(cfg)
    (path / rundir.LOCK).write_text(json.dumps({"pid": 999999999, "host": socket.gethostname()}))  # no such pid
    _, group = collect_one_group(tmp_path, [cfg])
    assert group.runs[0].state == "stopped"


def test_slurm_locks_pending_before_config_and_retried_cells(tmp_path):
    """A local runner claims a cell (pending) before its engine takes the cell's lock and writes config.json."""
    cells = three_seeds(tmp_path)
    pending = run_dir(cells[0])
    pending.mkdir(parents=True)
    rundir.acquire_lock(pending / rundir.CLAIM, rundir.owner())
    retried = write_config(cells[1])  # failed once, relaunched: error.json stays until the engine clears it
    (retried / "error.json").write_text(json.dumps({"type": "RuntimeError", "message": "old"}))
    rundir.acquire_lock(retried / rundir.LOCK, rundir.owner())
    run_dir(cells[2]).mkdir(parents=True)  # an empty directory: nothing ran there
    grid, group = collect_one_group(tmp_path, cells)
    assert [run.state for run in group.runs] == ["pending", "running", "not launched"]
    assert grid.problems == []
    assert "| vasso | running 1/3, pending 1/3 |" in markdown(grid)


def test_slurm_job_alive_makes_a_run_running(tmp_path):
    [cfg] = three_seeds(tmp_path)[:1]
    path = write_config(cfg)
    (path / "meta.json").write_text(json.dumps({"slurm_job_ids": ["41_0", "57_3"]}))
    grid = collect(Experiment("robust", "r", (cfg,)), runs_dir=tmp_path, slurm_jobs={"57_3": "RUNNING", "60_1": "PENDING"})
    assert grid.groups[0].runs[0].state == "running"
    grid = collect(Experiment("robust", "r", (cfg,)), runs_dir=tmp_path, slurm_jobs={"57_3": "PENDING"})
    assert grid.groups[0].runs[0].state == "pending"
    grid = collect(Experiment("robust", "r", (cfg,)), runs_dir=tmp_path, slurm_jobs={"41_0": "RUNNING"})
    assert grid.groups[0].runs[0].state == "stopped"  # only the latest job holds the cell


def test_hyperparameters_never_share_a_cell(tmp_path):
    cells = three_seeds(tmp_path, rho=0.1)[:2] + three_seeds(tmp_path, rho=0.2)[:2]
    for cfg, final in zip(cells, (90.0, 91.0, 80.0, 81.0)):
        write_done(cfg, final)
    sgd = cifar_cell(tmp_path, "robust", "resnet18", "sgd", 0)
    write_done(sgd, 70.0)
    grid = collect(Experiment("robust", "r", (sgd, *cells)), runs_dir=tmp_path, slurm_jobs=NO_SLURM)
    assert grid.rows == ["sgd", "vasso (rho=0.1)", "vasso (rho=0.2)"]
    assert grid.cell("vasso (rho=0.1)", "resnet18").values == [90.0, 91.0]
    assert grid.cell("vasso (rho=0.2)", "resnet18").values == [80.0, 81.0]


def test_extended_labels_are_consistent_across_columns():
    items = [
        ("a", "vasso", {"rho": 0.1, "theta": 0.4}),
        ("a", "vasso", {"rho": 0.2, "theta": 0.4}),
        ("b", "vasso", {"rho": 0.2, "theta": 0.4}),  # alone in its column, labelled alike
        ("b", "sam", {"rho": 0.2, "theta": 0.9}),
    ]
    assert extended_labels(items) == ["vasso (rho=0.1)", "vasso (rho=0.2)", "vasso (rho=0.2)", "sam"]


def test_bad_layout_field_names_the_fix(tmp_path):
    cells = three_seeds(tmp_path)
    experiment = Experiment("robust", "r", tuple(cells), columns=("modle",))
    with pytest.raises(ValueError, match="'modle'.*benchmarks/experiments.py"):
        collect(experiment, runs_dir=tmp_path, slurm_jobs=NO_SLURM)


def test_a_cell_queued_on_slurm_is_pending_before_its_job_starts(tmp_path):
    """`python -m slurm launch` records each submission in <runs>/<experiment>/.sweep/jobs.jsonl;
    until the job starts, nothing is in the run directory, yet the cell is held, as slurm/ says."""
    queued, retried, local = three_seeds(tmp_path)
    failed = write_config(retried)  # failed once, then `slurm retry` queued it again
    (failed / "error.json").write_text(json.dumps({"type": "RuntimeError", "message": "old"}))
    (failed / "meta.json").write_text(json.dumps({"slurm_job_ids": ["41_1"]}))
    ledger = tmp_path / "robust" / ".sweep" / "jobs.jsonl"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    entries = [(queued, "50_0", "slurm"), (retried, "41_1", "slurm"), (retried, "60_0", "slurm"),
               (local, "4242", "local")]  # a local runner's pid is not a Slurm job
    ledger.write_text("".join(json.dumps({"cell": cell_id(c), "job_id": j, "executor": e}) + "\n"
                              for c, j, e in entries) + '{"cell": "cut')
    grid = collect(Experiment("robust", "r", (queued, retried, local)), runs_dir=tmp_path,
                   slurm_jobs={"50_0": "PENDING", "60_0": "RUNNING", "4242": "RUNNING"})
    assert [run.state for run in grid.groups[0].runs] == ["pending", "running", "not launched"]
