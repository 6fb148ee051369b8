"""The training engine on the digits task, in-process (benchmarks/engine.py)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from benchmarks import engine
from benchmarks.__main__ import main
from benchmarks.config import TrainConfig, cell_id, run_dir, to_argv
from benchmarks.engine import NonFiniteLoss, StopSignals, Trainer, train
from benchmarks.rundir import RunDir
from benchmarks.tasks import get_task
from bench_fixtures import read_metrics, snapshot


def tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(epochs=2, steps_per_epoch=3, batch_size=32, progress="none", runs_dir=str(tmp_path))
    return TrainConfig("digits", **{**base, **kw})


def test_digits_run_writes_a_complete_run_dir(tmp_path):
    cfg = tiny(tmp_path)
    result = train(cfg)
    run = run_dir(cfg)
    assert json.loads((run / "config.json").read_text()) == dataclasses.asdict(cfg)
    meta = json.loads((run / "meta.json").read_text())
    assert {"versions", "host", "device", "started", "slurm_job_ids"} <= set(meta)
    assert meta["versions"]["torch"] == torch.__version__ and meta["device"] == "cpu"
    lines = read_metrics(run, drop_time=False)
    assert [(m["epoch"], m["split"]) for m in lines] == [(1, "train"), (1, "test"),
                                                        (2, "train"), (2, "test")]
    assert [m["step"] for m in lines] == [3, 3, 6, 6]
    assert all({"loss", "acc", "time_s", "lr"} <= set(m) for m in lines)
    assert lines[-1]["lr"] == 0.0  # the cosine schedule ends at zero after the last step
    assert json.loads((run / "result.json").read_text()) == result
    assert set(result) == {"primary", "final", "best", "epochs", "steps", "passes", "passes_per_step",
                           "time_s", "collapse"}
    assert result["collapse"] is None  # too short to be judged (benchmarks.collapse.PATIENCE)
    assert result["primary"] == "acc"
    assert result["final"]["test"] == {k: lines[-1][k] for k in ("loss", "acc")}
    assert result["final"]["train"]["loss"] == lines[-2]["loss"]
    assert (result["final"]["epoch"], result["final"]["step"]) == (2, 6)
    assert result["best"]["test"]["acc"] == max(m["acc"] for m in lines if m["split"] == "test")
    assert (result["epochs"], result["steps"]) == (2, 6)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["cell_id"] == cell_id(cfg) and ckpt["position"]["epoch"] == 2
    assert not (run / "error.json").exists()


def test_digits_learns(tmp_path):
    # Four short epochs of the default recipe reach far above chance (10%).
    result = train(tiny(tmp_path, epochs=4, steps_per_epoch=None, batch_size=64))
    assert result["final"]["test"]["acc"] > 80


def test_done_run_returns_at_once_and_changes_nothing(tmp_path, capsys):
    cfg = tiny(tmp_path, epochs=1)
    first = train(cfg)
    before = snapshot(tmp_path)
    assert train(cfg) == first
    assert main(to_argv(cfg)) == 0
    assert "already done" in capsys.readouterr().out
    assert snapshot(tmp_path) == before


def _poison_after(monkeypatch, good_steps: int) -> None:
    """Make the training loss NaN from step ``good_steps`` on (0-based)."""
    calls = {"n": 0}
    task = get_task("digits")
    real = task.loss

    def poisoned(model, batch, cfg):
        calls["n"] += 1
        loss, sums, weight = real(model, batch, cfg)
        return (loss * float("nan") if calls["n"] > good_steps else loss), sums, weight

    monkeypatch.setattr(task, "loss", poisoned)


def test_non_finite_loss_writes_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, epochs=3)
    _poison_after(monkeypatch, good_steps=4)  # epoch 1: steps 0-2; NaN at step 4 of epoch 2
    with pytest.raises(NonFiniteLoss):
        train(cfg)
    run = run_dir(cfg)
    error = json.loads((run / "error.json").read_text())
    assert error["type"] == "NonFiniteLoss" and error["step"] == 4 and math.isnan(error["loss"])
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["position"]["epoch"] == 1 and ckpt["position"]["step"] == 3
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())
    assert not (run / "result.json").exists()

    # A relaunch (healthy now) moves error.json aside, resumes from epoch 1 and finishes.
    monkeypatch.undo()
    result = train(cfg)
    assert result["epochs"] == 3 and not (run / "error.json").exists()
    previous = [json.loads(line) for line in (run / "previous_errors.jsonl").read_text().splitlines()]
    assert [e["type"] for e in previous] == ["NonFiniteLoss"]
    assert [m["epoch"] for m in read_metrics(run)] == [1, 1, 2, 2, 3, 3]


def test_non_finite_loss_names_the_first_bad_step_between_two_checks(tmp_path, monkeypatch):
    # 20 steps per epoch: the loop reads the device flag every 2 steps, so the NaN of
    # step 4 is found after step 5, which is NaN too; the error names step 4.
    cfg = tiny(tmp_path, epochs=1, steps_per_epoch=20)
    _poison_after(monkeypatch, good_steps=4)
    with pytest.raises(NonFiniteLoss) as raised:
        train(cfg)
    assert raised.value.step == 4
    assert json.loads((run_dir(cfg) / "error.json").read_text())["step"] == 4


def test_cli_diverging_lr_exits_1_with_error_json(tmp_path):
    cfg = tiny(tmp_path, lr=1e30, epochs=1)
    assert main(to_argv(cfg)) == 1
    error = json.loads((run_dir(cfg) / "error.json").read_text())
    assert error["type"] == "NonFiniteLoss" and not math.isfinite(error["loss"])
    assert not (run_dir(cfg) / "result.json").exists()


def test_other_exception_writes_error_json(tmp_path, monkeypatch):
    cfg = tiny(tmp_path)

    def broken(self, batch):
        raise RuntimeError("boom in the step")

    monkeypatch.setattr(Trainer, "_train_step", broken)
    assert main(to_argv(cfg)) == 1
    error = json.loads((run_dir(cfg) / "error.json").read_text())
    assert error["type"] == "RuntimeError" and error["message"] == "boom in the step"
    assert "_train_step" in error["traceback"] or "broken" in error["traceback"]


def _trainer(cfg) -> Trainer:
    task = get_task(cfg.task)
    return Trainer(cfg, task, task.load_data(cfg), torch.device("cpu"), RunDir(run_dir(cfg)),
                   StopSignals())


def test_init_and_batches_shared_across_optimizers_not_seeds(tmp_path):
    sgd = _trainer(tiny(tmp_path))
    vasso = _trainer(tiny(tmp_path, optimizer="vasso", rho=0.1, theta=0.4, lr=0.1))
    other_seed = _trainer(tiny(tmp_path, seed=1))

    def first_batch(t):
        return next(iter(t.batches.train_batches(epoch=0, start=0, stop=1)))

    for a, b in zip(sgd.model.state_dict().values(), vasso.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(first_batch(sgd)[0], first_batch(vasso)[0])
    assert torch.equal(first_batch(sgd)[1], first_batch(vasso)[1])
    assert not torch.equal(sgd.model[0].weight, other_seed.model[0].weight)
    assert not torch.equal(first_batch(sgd)[1], first_batch(other_seed)[1])


@pytest.mark.parametrize("optimizer", ["sam", "asam", "gsam", "vasso"])
def test_sharpness_aware_optimizers_train(tmp_path, optimizer):
    sgd = train(tiny(tmp_path, epochs=1))
    cfg = tiny(tmp_path, epochs=1, optimizer=optimizer, rho=0.5 if optimizer == "asam" else 0.05,
               gsam_alpha=0.1 if optimizer == "gsam" else 0.0)
    result = train(cfg)
    assert math.isfinite(result["final"]["train"]["loss"])
    assert result["final"]["train"]["loss"] != sgd["final"]["train"]["loss"]
    # The method's state travels in the checkpoint together with the base optimizer's.
    ckpt = torch.load(run_dir(cfg) / "checkpoint.pt", weights_only=True)
    assert ckpt["optimizer"]["base"]["state"]  # momentum buffers


def test_bf16_autocast_runs(tmp_path):
    result = train(tiny(tmp_path, epochs=1, precision="bf16"))
    assert math.isfinite(result["final"]["test"]["loss"])


def test_warmup_and_constant_schedule(tmp_path):
    cfg = tiny(tmp_path, schedule="constant", warmup_epochs=1.0, epochs=2)
    factor = engine.lr_factor(cfg, steps_per_epoch=3, total_steps=6)
    assert [factor(s) for s in range(6)] == [1 / 3, 2 / 3, 1.0, 1.0, 1.0, 1.0]
    cosine = engine.lr_factor(dataclasses.replace(cfg, schedule="cosine"), steps_per_epoch=3,
                              total_steps=6)
    assert cosine(3) == 1.0 and cosine(6) == 0.0 and 0 < cosine(5) < cosine(4) < 1
    train(cfg)
    assert [m["lr"] for m in read_metrics(run_dir(cfg)) if m["split"] == "train"] == [cfg.lr, cfg.lr]


def test_metrics_left_without_a_checkpoint_are_dropped(tmp_path):
    # A run killed between its first metrics line and its first checkpoint.
    cfg = tiny(tmp_path, epochs=1)
    run = run_dir(cfg)
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "split": "train", "stale": true}\n')
    train(cfg)
    assert [m["split"] for m in read_metrics(run)] == ["train", "test"]
    assert not any("stale" in m for m in read_metrics(run))


def test_a_failure_while_loading_data_writes_error_json(tmp_path, monkeypatch):
    # A corrupt data file is a failure (exit 1, error.json), not bad input: the
    # launcher's retry must find it like any other failed cell.
    import pickle

    def corrupt(cfg):
        raise pickle.UnpicklingError("pickle data was truncated")

    monkeypatch.setattr(get_task("digits"), "load_data", corrupt)
    cfg = tiny(tmp_path)
    assert main(to_argv(cfg)) == 1
    error = json.loads((run_dir(cfg) / "error.json").read_text())
    assert error["type"] == "UnpicklingError" and "truncated" in error["message"]
    assert not (run_dir(cfg) / "result.json").exists()

    # Failing again before the run begins keeps the first failure's story.
    assert main(to_argv(cfg)) == 1
    previous = (run_dir(cfg) / "previous_errors.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in previous] == [error]
    assert json.loads((run_dir(cfg) / "error.json").read_text())["time"] >= error["time"]
