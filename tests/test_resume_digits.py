"""Bit-exact resumption: after SIGKILL, after SIGTERM / SIGUSR2 (exit 75, mid-epoch checkpoint).

Each interrupted run is compared with an uninterrupted run of the same cell in
another runs dir: metrics.jsonl, result.json (all but wall-clock time) and the
final weights must be equal bit for bit (CPU, one thread).
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from benchmarks import engine
from benchmarks.__main__ import main
from benchmarks.config import TrainConfig, run_dir, to_argv
from benchmarks.engine import Preempted, train
from benchmarks.training.signals import ignore_stop_signals
from bench_fixtures import kill_after_first_checkpoint, read_metrics, read_result

EPOCHS = 8


def cell(runs_dir, **kw) -> TrainConfig:
    # Batch 16: 84 steps per epoch, long enough to be interrupted mid-training.
    fields = dict(epochs=EPOCHS, batch_size=16, optimizer="vasso", rho=0.05, theta=0.4,
                  progress="log", runs_dir=str(runs_dir))
    return TrainConfig("digits", **{**fields, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cfg = cell(tmp_path_factory.mktemp("reference"))
    train(cfg)
    return run_dir(cfg)


def assert_same_run(run, reference):
    assert read_metrics(run) == read_metrics(reference)
    assert read_result(run) == read_result(reference)
    ours = torch.load(run / "checkpoint.pt", weights_only=True)
    theirs = torch.load(reference / "checkpoint.pt", weights_only=True)
    for name, tensor in theirs["model"].items():
        assert torch.equal(ours["model"][name], tensor), name


def test_sigkill_then_relaunch_equals_uninterrupted(tmp_path, reference):
    cfg = cell(tmp_path)
    run = run_dir(cfg)
    kill_after_first_checkpoint(to_argv(cfg), run, timeout_s=120)
    # Relaunch the same command (in-process: the same argv through the CLI's main).
    assert main(to_argv(cfg)) == 0
    assert_same_run(run, reference)


def _raise_signal_at(monkeypatch, signum: int, epoch: int, step_in_epoch: int) -> None:
    """Deliver a real signal to this process right after the given step."""
    real_step = engine.Progress.step

    def step(self, step_in_epoch_now, loss, lr):
        real_step(self, step_in_epoch_now, loss, lr)
        if (self.epoch, step_in_epoch_now) == (epoch, step_in_epoch):
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(engine.Progress, "step", step)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR2])
def test_signal_exits_75_mid_epoch_and_resumes_exactly(tmp_path, reference, monkeypatch, signum):
    cfg = cell(tmp_path, progress="none")
    run = run_dir(cfg)
    _raise_signal_at(monkeypatch, signum, epoch=1, step_in_epoch=30)
    handler_before = signal.getsignal(signum)
    assert main(to_argv(cfg)) == 75
    assert signal.getsignal(signum) == handler_before  # the engine's handler is gone
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ckpt["position"]["epoch"], ckpt["position"]["step_in_epoch"]) == (1, 30)
    assert ckpt["position"]["step"] == 84 + 30
    meta = json.loads((run / "meta.json").read_text())
    assert meta["stops"][-1] == {**meta["stops"][-1], "reason": signal.Signals(signum).name,
                                 "step": 114}
    assert not (run / "result.json").exists() and not (run / "error.json").exists()

    monkeypatch.undo()
    assert len(json.loads((run / "meta.json").read_text())["starts"]) == 1
    train(cfg)
    assert len(json.loads((run / "meta.json").read_text())["starts"]) == 2
    assert_same_run(run, reference)


def test_preempted_in_process_raises(tmp_path, monkeypatch):
    cfg = TrainConfig("digits", epochs=1, steps_per_epoch=4, batch_size=32, progress="none",
                      runs_dir=str(tmp_path))
    _raise_signal_at(monkeypatch, signal.SIGTERM, epoch=0, step_in_epoch=2)
    with pytest.raises(Preempted):
        train(cfg)
    assert (run_dir(cfg) / "checkpoint.pt").exists()


def test_slurm_job_ids_are_appended_on_each_start(tmp_path, monkeypatch):
    cfg = TrainConfig("digits", epochs=2, steps_per_epoch=2, batch_size=32, progress="none",
                      runs_dir=str(tmp_path))
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    _raise_signal_at(monkeypatch, signal.SIGTERM, epoch=0, step_in_epoch=1)
    with pytest.raises(Preempted):
        train(cfg)
    monkeypatch.undo()  # no more signals, no array job
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    train(cfg)
    meta = json.loads((run_dir(cfg) / "meta.json").read_text())
    assert meta["slurm_job_ids"] == ["41_3", "42"]



def test_loader_workers_ignore_stop_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR2)}
    try:
        ignore_stop_signals(worker_id=0)
        assert all(signal.getsignal(s) == signal.SIG_IGN for s in saved)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
