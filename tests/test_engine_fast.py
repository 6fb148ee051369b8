"""The engine's two paths for one CIFAR cell: ``--fast off`` (DataLoader, torchvision's
functional transforms, foreach SGD, a float LR) and ``--fast on`` (DeviceCIFAR, fused
SGD, an fp32 tensor LR; on the CPU the step runs eagerly and the layout stays NCHW).
They must train the same cell: the same batches, the same augmentation draws, the
same losses and weights up to floating-point rounding; and each resumes bit-exactly.
"""

from __future__ import annotations

import dataclasses
import os
import signal

import pytest
import torch

from benchmarks import engine
from benchmarks.config import ConfigError, TrainConfig, cell_id, run_dir
from benchmarks.engine import Preempted, StopSignals, Trainer, train
from benchmarks.rundir import RunDir
from benchmarks.fast import DeviceCIFAR
from benchmarks.tasks import get_task
from benchmarks.training.data_path import use_fast_path
from bench_fixtures import read_metrics, read_result, write_cifar10

# On the CPU the paths compute the same floats but for the LR (an fp32 tensor against a
# Python float): a few ulps. This tiny-batch BatchNorm cell amplifies any difference
# fast (channels-last kernels alone, ~1e-6 in the gradients, give ~1e-4 in the weights
# after two steps), so the tolerance is tight and a difference of draws is far outside.
TOL = dict(rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar-data")
    write_cifar10(root)    # 40 training images, 16 test images
    return root


def cell(data_dir, runs_dir, **kw) -> TrainConfig:
    # VaSSO on ResNet-18 with every augmentation on, a cutout in every image (the CIFAR
    # default, the official p = 0.5, would leave half the images uncut: a weaker check).
    fields = dict(model="resnet18", optimizer="vasso", rho=0.1, theta=0.4, epochs=2, cutout_prob=1.0,
                  steps_per_epoch=2, batch_size=8, num_workers=0, progress="none",
                  data_dir=str(data_dir), runs_dir=str(runs_dir), device="cpu")
    return TrainConfig("cifar", **{**fields, **kw})


def weights(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    return torch.load(run_dir(cfg) / "checkpoint.pt", weights_only=True)["model"]


def assert_close_runs(a: TrainConfig, b: TrainConfig) -> None:
    ma, mb = read_metrics(run_dir(a)), read_metrics(run_dir(b))
    assert [(m["epoch"], m["step"], m["split"]) for m in ma] == \
        [(m["epoch"], m["step"], m["split"]) for m in mb]
    for x, y in zip(ma, mb):
        assert x["loss"] == pytest.approx(y["loss"], **TOL), x
        assert x["acc"] == y["acc"] and x["lr"] == pytest.approx(y["lr"], rel=1e-6)
    wa, wb = weights(a), weights(b)
    for name, tensor in wa.items():
        torch.testing.assert_close(tensor, wb[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def off_run(data_dir, tmp_path_factory):
    cfg = cell(data_dir, tmp_path_factory.mktemp("off"), fast="off")
    train(cfg)
    return cfg


def test_fast_is_not_part_of_the_cell(data_dir, tmp_path):
    off, on = cell(data_dir, tmp_path, fast="off"), cell(data_dir, tmp_path, fast="on")
    assert cell_id(off) == cell_id(on) and run_dir(off) == run_dir(on)


def test_fast_on_trains_the_same_cell_as_fast_off(data_dir, tmp_path, off_run):
    on = cell(data_dir, tmp_path, fast="on")
    train(on)
    assert_close_runs(on, off_run)
    # The runs did train: the weights moved, and the losses are not those of another
    # seed index (other weights, batches and draws), which differ by far more than TOL.
    assert read_metrics(run_dir(on))[0]["loss"] > 0
    other = cell(data_dir, tmp_path / "seed1", fast="on", seed=1)
    train(other)
    ours, theirs = read_metrics(run_dir(on))[0]["loss"], read_metrics(run_dir(other))[0]["loss"]
    assert abs(ours - theirs) > 1e-2 * abs(ours)


def test_the_paths_agree_only_because_they_share_the_draws(data_dir, tmp_path, off_run,
                                                           monkeypatch):
    # The same cell with the device path's augmentation taken from the next epoch's
    # draw: same init, same batches, other crops / flips / cutouts. It must not pass
    # for the same run, so the tolerance above does detect a difference of draws.
    real = DeviceCIFAR.draw
    monkeypatch.setattr(DeviceCIFAR, "draw", lambda self, epoch: real(self, epoch + 1))
    shifted = cell(data_dir, tmp_path, fast="on")
    train(shifted)
    first = read_metrics(run_dir(shifted))[0]["loss"]
    assert first != pytest.approx(read_metrics(run_dir(off_run))[0]["loss"], rel=1e-3)
    with pytest.raises(AssertionError):
        assert_close_runs(shifted, off_run)


def _trainer(cfg: TrainConfig) -> Trainer:
    task = get_task(cfg.task)
    return Trainer(cfg, task, task.load_data(cfg), torch.device(cfg.device),
                   RunDir(run_dir(cfg)), StopSignals())


def test_the_fast_configuration_is_what_a_cuda_graph_needs(data_dir, tmp_path):
    # The per-step cosine, so that one step moves the rate (the CIFAR default, the
    # official per-epoch one, holds it for the first two epochs).
    fast = _trainer(cell(data_dir, tmp_path, fast="on", schedule="cosine"))
    assert fast.batches.fast and fast.step.mode == "eager"     # no CUDA here: eager, no warning
    group = fast.base.param_groups[0]
    assert group["fused"] and isinstance(group["lr"], torch.Tensor) and group["lr"].dim() == 0
    assert not fast.batches.channels_last  # channels-last on CUDA only
    x, y = next(iter(fast.batches.train_batches(0, 0, 1)))
    assert x.is_contiguous() and x.shape == (8, 3, 32, 32)
    # The scheduler moves the very tensor a recorded graph would read.
    lr = group["lr"]
    fast._train_step((x, y))
    fast.scheduler.step()
    assert fast.base.param_groups[0]["lr"] is lr
    assert float(lr) == pytest.approx(float(fast.scheduler.get_last_lr()[0]), rel=1e-6)
    assert float(lr) != pytest.approx(fast.cfg.lr, rel=1e-3)  # it did move (cosine)

    plain = _trainer(cell(data_dir, tmp_path, fast="auto"))  # auto on a CPU: off
    assert not plain.batches.fast and not plain.base.param_groups[0]["fused"]
    assert isinstance(plain.base.param_groups[0]["lr"], float)
    # Both paths feed the same batch (same order, same draws) to the model, bit for bit.
    px, py = next(iter(plain.batches.train_batches(0, 0, 1)))
    assert torch.equal(py, y) and torch.equal(px, x)


def test_fast_on_is_refused_for_a_task_without_a_fast_path(tmp_path):
    with pytest.raises(ConfigError, match="--fast='on': only the cifar task has a fast path"):
        TrainConfig("digits", fast="on", runs_dir=str(tmp_path))
    assert not use_fast_path(TrainConfig("digits"), torch.device("cuda"))
    assert use_fast_path(TrainConfig("cifar"), torch.device("cuda"))
    assert not use_fast_path(TrainConfig("cifar", fast="off"), torch.device("cuda"))


# -- resume -----------------------------------------------------------------------------

def _preempt_after(monkeypatch, epoch: int, step_in_epoch: int) -> None:
    real_step = engine.Progress.step

    def step(self, step_in_epoch_now, loss, lr):
        real_step(self, step_in_epoch_now, loss, lr)
        if (self.epoch, step_in_epoch_now) == (epoch, step_in_epoch):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(engine.Progress, "step", step)


def _interrupted(cfg: TrainConfig, resume_cfg: TrainConfig, monkeypatch) -> None:
    _preempt_after(monkeypatch, epoch=1, step_in_epoch=1)  # mid-epoch, mid-run
    with pytest.raises(Preempted):
        train(cfg)
    ckpt = torch.load(run_dir(cfg) / "checkpoint.pt", weights_only=True)
    assert (ckpt["position"]["epoch"], ckpt["position"]["step_in_epoch"]) == (1, 1)
    monkeypatch.undo()
    train(resume_cfg)


def test_fast_path_resumes_bit_exactly(data_dir, tmp_path, monkeypatch):
    reference = cell(data_dir, tmp_path / "reference", fast="on")
    train(reference)
    cfg = cell(data_dir, tmp_path / "interrupted", fast="on")
    _interrupted(cfg, cfg, monkeypatch)
    assert read_metrics(run_dir(cfg)) == read_metrics(run_dir(reference))
    assert read_result(run_dir(cfg)) == read_result(run_dir(reference))
    for name, tensor in weights(reference).items():
        assert torch.equal(weights(cfg)[name], tensor), name


def test_a_run_preempted_on_one_path_resumes_on_the_other(data_dir, tmp_path, monkeypatch,
                                                         off_run):
    # --fast is not part of the cell: a relaunch may take the other path. The optimizer
    # keeps the implementation of the path that resumes (fused or not) and a tensor LR
    # on the fast path; the run still equals the uninterrupted one up to rounding.
    cfg = cell(data_dir, tmp_path, fast="off")
    on = dataclasses.replace(cfg, fast="on")
    _interrupted(cfg, on, monkeypatch)
    assert_close_runs(on, off_run)
    resumed = _trainer(on)
    assert resumed.base.param_groups[0]["fused"]
    assert isinstance(resumed.base.param_groups[0]["lr"], torch.Tensor)
