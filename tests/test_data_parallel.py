"""Data parallel through the engine: ``python -m benchmarks`` under torchrun, two CPU
processes over gloo, on the imagenet task with a tiny ImageFolder of real JPEGs and
ViT-S/32 (a model without BatchNorm, whose per-rank statistics would otherwise differ
from one process's by design)."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from benchmarks.__main__ import main
from benchmarks.config import parse_argv
from benchmarks.models import create_model
from benchmarks.tasks.base import data_seed
from imagenet_fixtures import write_imagenet

REPO = pathlib.Path(__file__).resolve().parents[1]
CELL = ["imagenet", "--model", "vit_s32", "--image-size", "32", "--batch-size", "4",
        "--optimizer", "vasso", "--device", "cpu", "--progress", "none", "--num-workers", "0",
        "--threads", "1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
    return write_imagenet(tmp_path_factory.mktemp("data"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(processes: int, args: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "benchmarks", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
            "--master-port", str(free_port()), "-m", "benchmarks", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (torchrun starts its workers in
    sessions of their own, so a process group does not reach them)."""
    children: dict[int, list[int]] = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_after(argv: list[str], runs: pathlib.Path, step: int) -> int:
    """Start ``argv``; once a checkpoint at ``step`` or later is on disk, SIGKILL it
    (torchrun and every rank: no chance to save). Returns the checkpoint's step."""
    proc = subprocess.Popen(argv, cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            path = next(runs.glob("adhoc/*/checkpoint.pt"), None)
            try:
                if path is not None and torch.load(path, weights_only=False)["position"]["step"] >= step:
                    break
            except Exception:  # noqa: BLE001 - replaced while read: look again
                pass
            time.sleep(0.1)
        else:
            pytest.fail(f"the run wrote no checkpoint at step {step} or later in 300 s")
    finally:
        kill_tree(proc.pid)
        proc.wait()
    return torch.load(cell_dir(runs) / "checkpoint.pt", weights_only=False)["position"]["step"]


def run(processes: int, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command(processes, args), cwd=REPO, env=env(), capture_output=True,
                          text=True, timeout=600)


def cell_dir(runs: pathlib.Path) -> pathlib.Path:
    [path] = list((runs / "adhoc").iterdir())
    return path


def final_state(runs: pathlib.Path) -> tuple[dict, dict[str, torch.Tensor], list[dict]]:
    path = cell_dir(runs)
    checkpoint = torch.load(path / "checkpoint.pt", weights_only=False)
    metrics = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return json.loads((path / "result.json").read_text()), checkpoint["model"], metrics


@pytest.mark.slow
def test_two_processes_train_as_one_on_the_same_global_batch(data_dir, tmp_path):
    args = [*CELL, "--epochs", "2", "--data-dir", str(data_dir)]
    one = run(1, [*args, "--runs-dir", str(tmp_path / "one")])
    two = run(2, [*args, "--runs-dir", str(tmp_path / "two")])
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("run directory:") == 1  # rank 0 alone writes the run directory
    result1, weights1, metrics1 = final_state(tmp_path / "one")
    result2, weights2, metrics2 = final_state(tmp_path / "two")
    assert result2["steps"] == result1["steps"] == 6
    meta = json.loads((cell_dir(tmp_path / "two") / "meta.json").read_text())
    assert meta["world_size"] == 2
    # The same steps, up to the order of the sums (the gradient averaged over two ranks).
    for name, tensor in weights1.items():
        torch.testing.assert_close(weights2[name], tensor, rtol=1e-4, atol=1e-5)
    assert len(metrics1) == len(metrics2)
    for a, b in zip(metrics1, metrics2):
        for key in ("loss", "acc", "top5"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-4)
    # Not vacuous: training moved the weights far beyond that bound.
    torch.manual_seed(data_seed(parse_argv(args), "init"))
    initial = create_model("vit_s32", 3, image_size=32).state_dict()
    assert max(float((initial[k] - v).abs().max()) for k, v in weights1.items()) > 1e-2


@pytest.mark.slow
def test_a_two_process_run_killed_mid_epoch_resumes_exactly(data_dir, tmp_path):
    args = [*CELL, "--epochs", "3", "--data-dir", str(data_dir), "--checkpoint-every-steps", "1"]
    whole = run(2, [*args, "--runs-dir", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr[-2000:]
    runs = tmp_path / "killed"
    step = kill_after(command(2, [*args, "--runs-dir", str(runs)]), runs, step=4)
    assert 4 <= step < 9 and not (cell_dir(runs) / "result.json").exists()
    resumed = run(2, [*args, "--runs-dir", str(runs)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout
    result_whole, weights_whole, metrics_whole = final_state(tmp_path / "whole")
    result, weights, metrics = final_state(runs)
    assert {k: result[k] for k in ("final", "best", "steps")} == {
        k: result_whole[k] for k in ("final", "best", "steps")}
    for name, tensor in weights_whole.items():
        assert torch.equal(weights[name], tensor), name
    assert [{k: v for k, v in m.items() if k != "time_s"} for m in metrics] == [
        {k: v for k, v in m.items() if k != "time_s"} for m in metrics_whole]


def test_a_world_size_that_does_not_divide_the_global_batch_is_one_line(
        data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main([*CELL, "--epochs", "1", "--data-dir", str(data_dir), "--runs-dir",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == ("python -m benchmarks: error: --batch-size=4 is the global batch over 3 "
                   "processes and must be a multiple of 3; use 3 or 6\n")
    assert not any(tmp_path.iterdir())  # nothing written
