"""benchmarks.monitor: TensorBoard event files, read back with TensorBoard's own reader."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from benchmarks import monitor
from benchmarks.monitor import Monitor
from benchmarks.rundir import TENSORBOARD


def read(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the run's event files: [(step, value), ...]."""
    events = EventAccumulator(str(run_dir / TENSORBOARD))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def epoch_lines(epoch: int, step: int, test_acc: float) -> list[dict]:
    stamp = {"epoch": epoch, "step": step, "lr": 0.05 / epoch}
    return [{**stamp, "split": "train", "loss": 1.0 / epoch, "acc": 50.0 + epoch, "time_s": 1.0},
            {**stamp, "split": "test", "loss": 2.0 / epoch, "acc": test_acc, "time_s": 1.5}]


def test_metric_lines_become_scalars_at_their_step(tmp_path):
    with Monitor(tmp_path) as live:
        live.lines(epoch_lines(1, 21, 60.0))
        live.lines(epoch_lines(2, 42, 70.0))
    scalars = read(tmp_path)
    assert set(scalars) == {"train/loss", "train/acc", "test/loss", "test/acc", "lr"}
    assert scalars["test/acc"] == [(21, 60.0), (42, 70.0)]
    assert scalars["train/loss"] == [(21, 1.0), (42, 0.5)]
    assert scalars["lr"] == [(21, pytest.approx(0.05)), (42, pytest.approx(0.025))]  # once per step


def test_step_scalars_stay_on_the_device_until_flush(tmp_path):
    live = Monitor(tmp_path)
    grad = torch.tensor(3.0)
    live.record(1, grad_norm=grad, perturbation_norm=torch.tensor(0.05))
    grad.fill_(4.0)  # a CUDA graph overwrites its buffers at the next replay: the value recorded stays
    live.record(2, grad_norm=grad, perturbation_norm=torch.tensor(0.05))
    live.record(3, grad_norm=torch.tensor(5.0))  # another set of scalars at another step
    live.writer.flush()
    assert not any(tag.startswith("step/") for tag in read(tmp_path)), "written before flush"
    live.flush()
    scalars = read(tmp_path)
    assert scalars["step/grad_norm"] == [(1, 3.0), (2, 4.0), (3, 5.0)]
    assert [step for step, _ in scalars["step/perturbation_norm"]] == [1, 2]
    live.close()


def test_a_resumed_run_replaces_the_steps_it_repeats(tmp_path):
    with Monitor(tmp_path) as first:  # preempted after its third evaluation, checkpoint at step 20
        for epoch, acc in ((1, 60.0), (2, 65.0), (3, 99.0)):
            first.lines(epoch_lines(epoch, 10 * epoch, acc))
    with Monitor(tmp_path, resumed_at=20) as resumed:
        resumed.lines(epoch_lines(3, 30, 68.0))
    assert read(tmp_path)["test/acc"] == [(10, 60.0), (20, 65.0), (30, 68.0)]


def test_off_writes_nothing(tmp_path):
    live = Monitor.open(tmp_path, environ={"VASSO_TENSORBOARD": "0", "SLURM_JOB_ID": "7"})
    assert not live.on
    live.lines(epoch_lines(1, 10, 60.0))
    live.record(1, grad_norm=torch.tensor(1.0))
    live.close()
    assert not (tmp_path / TENSORBOARD).exists()


@pytest.mark.parametrize("environ, on", [
    ({}, False),  # off by default outside a cluster job
    ({"SLURM_JOB_ID": "7"}, True),  # on by default in one, the package being installed
    ({"SLURM_JOB_ID": "7", "VASSO_TENSORBOARD": "0"}, False),
    ({"VASSO_TENSORBOARD": "1"}, True),
    ({"VASSO_TENSORBOARD": "off"}, False),
])
def test_when_it_is_on(environ, on):
    assert monitor.wanted(environ) is on


def test_bad_settings_say_what_to_do(monkeypatch):
    with pytest.raises(ValueError, match="expected 1 .on. or 0 .off."):
        monitor.wanted({"VASSO_TENSORBOARD": "maybe"})
    monkeypatch.setattr(monitor, "installed", lambda: False)
    assert monitor.wanted({"SLURM_JOB_ID": "7"}) is False  # the suite runs without the package
    with pytest.raises(ValueError, match="pip install tensorboard"):
        monitor.wanted({"VASSO_TENSORBOARD": "1"})


def test_the_engine_writes_what_it_logs(tmp_path, monkeypatch):
    import json

    from benchmarks.config import TrainConfig, run_dir
    from benchmarks.engine import train

    monkeypatch.setenv("VASSO_TENSORBOARD", "1")
    cfg = TrainConfig("digits", epochs=2, batch_size=64, optimizer="sam", progress="none", runs_dir=str(tmp_path))
    train(cfg)
    scalars = read(run_dir(cfg))
    lines = [json.loads(line) for line in (run_dir(cfg) / "metrics.jsonl").read_text().splitlines()]
    for line in lines:  # every number of metrics.jsonl, at its step
        for name in ("loss", "acc"):
            assert (line["step"], pytest.approx(line[name])) in scalars[f"{line['split']}/{name}"]
    assert [step for step, _ in scalars["lr"]] == sorted({line["step"] for line in lines})
    steps = [step for step, _ in scalars["step/loss"]]  # the loss where the engine reads the host anyway
    assert len(steps) >= 10 and steps == sorted(steps) and steps[-1] <= lines[-1]["step"]


def test_a_bad_setting_is_bad_input_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from benchmarks.__main__ import main
    from benchmarks.config import TrainConfig, run_dir, to_argv

    monkeypatch.setenv("VASSO_TENSORBOARD", "yes please")
    cfg = TrainConfig("digits", epochs=1, progress="none", runs_dir=str(tmp_path))
    assert main(to_argv(cfg)) == 2
    assert "VASSO_TENSORBOARD='yes please'" in capsys.readouterr().err
    assert not run_dir(cfg).exists()
