"""What the command line asks for is what the engine does (benchmarks/engine.py).

Every option that reaches the optimizer, the loss, the autocast or the evaluation
schedule is checked on the objects the engine builds; the learning rate of each
step is recorded where the base optimizer reads it; a resume is checked with a
model that draws from the global RNG during training (dropout), so that the
checkpoint's RNG state matters.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

import vasso
from benchmarks import engine
from benchmarks.config import TrainConfig, parse_argv, run_dir
from benchmarks.engine import Preempted, StopSignals, Trainer, train
from benchmarks.rundir import RunDir
from benchmarks.tasks import get_task
from bench_fixtures import read_metrics, read_result


def argv(tmp_path, *options: str) -> TrainConfig:
    return parse_argv(["digits", "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "32",
                       "--progress", "none", "--runs-dir", str(tmp_path), *options])


def build(cfg: TrainConfig) -> Trainer:
    task = get_task(cfg.task)
    return Trainer(cfg, task, task.load_data(cfg), torch.device("cpu"), RunDir(run_dir(cfg)),
                   StopSignals())


# -- the options reach the built objects ---------------------------------------------

def test_vasso_options_reach_the_optimizer(tmp_path):
    t = build(argv(tmp_path, "--optimizer", "vasso", "--rho", "0.07", "--theta", "0.3",
                   "--bn-stats", "both", "--ascent-every", "3", "--lr", "0.02",
                   "--weight-decay", "0.004", "--momentum", "0.8", "--nesterov"))
    opt = t.optimizer
    assert type(opt) is vasso.VaSSO and opt.base is t.base
    assert (opt.rho, opt.theta, opt.bn_stats, opt.ascent_every) == (0.07, 0.3, "both", 3)
    assert opt.model is t.model
    [group] = t.base.param_groups
    assert type(t.base) is torch.optim.SGD
    assert (group["initial_lr"], group["weight_decay"], group["momentum"], group["nesterov"]) == (
        0.02, 0.004, 0.8, True)


def test_default_batchnorm_policy_is_first_pass_only(tmp_path):
    opt = build(argv(tmp_path, "--optimizer", "sam")).optimizer
    assert opt.bn_stats == "first" and opt.ascent_every == 1 and opt.ascent_prob is None
    assert opt.base.param_groups[0]["nesterov"] is False


def test_asam_options_reach_the_optimizer(tmp_path):
    opt = build(argv(tmp_path, "--optimizer", "asam", "--eta", "0.2", "--asam-scale", "all")).optimizer
    assert type(opt) is vasso.ASAM
    assert (opt.rho, opt.eta, opt.scale) == (0.5, 0.2, "all")  # ASAM's own default rho


def test_gsam_options_reach_the_optimizer(tmp_path):
    opt = build(argv(tmp_path, "--optimizer", "gsam", "--rho", "0.1", "--gsam-rho-min", "0.02",
                     "--gsam-alpha", "0.3", "--lr", "0.2")).optimizer
    assert type(opt) is vasso.GSAM
    assert (opt.rho, opt.rho_min, opt.alpha, opt.lr_max, opt.lr_min) == (0.1, 0.02, 0.3, 0.2, 0.0)


def test_adamw_base(tmp_path):
    t = build(argv(tmp_path, "--optimizer", "sam", "--base", "adamw", "--lr", "0.001",
                   "--weight-decay", "0.05", "--adam-beta1", "0.8", "--adam-beta2", "0.98",
                   "--adam-eps", "1e-6"))
    assert type(t.base) is torch.optim.AdamW and t.optimizer.base is t.base
    [group] = t.base.param_groups
    assert (group["initial_lr"], group["weight_decay"], group["betas"], group["eps"]) == (
        0.001, 0.05, (0.8, 0.98), 1e-6)


def test_cheaper_step_options_reach_the_optimizer(tmp_path):
    opt = build(argv(tmp_path, "--optimizer", "vasso", "--ascent-prob", "0.25", "--skip", "reuse",
                     "--update-on-reuse")).optimizer
    assert (opt.ascent_every, opt.ascent_prob, opt.skip, opt.update_on_reuse) == (1, 0.25, "reuse", True)
    sam = build(argv(tmp_path, "--optimizer", "sam", "--ascent-every", "2")).optimizer
    assert (sam.ascent_every, sam.ascent_prob, sam.skip) == (2, None, "clean")


@pytest.mark.parametrize("optimizer, options, passes", [
    ("sgd", [], 6),  # one per step
    ("sam", [], 12),  # two per step
    ("sam", ["--ascent-every", "2"], 9),  # steps 0, 2, 4 ascend
    ("vasso", ["--ascent-every", "3", "--skip", "reuse"], 8),  # a reused step is one pass
])
def test_result_records_the_measured_passes(tmp_path, optimizer, options, passes):
    result = train(argv(tmp_path, "--optimizer", optimizer, *options))
    assert result["steps"] == 6
    assert (result["passes"], result["passes_per_step"]) == (passes, passes / 6)
    assert read_result(run_dir(argv(tmp_path, "--optimizer", optimizer, *options)))["passes"] == passes


def test_plain_sgd_is_the_base_alone(tmp_path):
    t = build(argv(tmp_path, "--optimizer", "sgd"))
    assert t.optimizer is t.base and type(t.base) is torch.optim.SGD


def test_label_smoothing_reaches_the_training_loss_only(tmp_path):
    t = build(argv(tmp_path, "--label-smoothing", "0.1"))
    assert t.step.optimizer is t.optimizer
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8)
    with torch.no_grad():
        output = t.model(x)
        loss, sums, weight = t.task.loss(t.model, (x, y), t.cfg)
        eval_sums, _ = t.task.eval_sums(t.model, (x, y))
    smoothed = nn.functional.cross_entropy(output, y, label_smoothing=0.1)
    assert torch.equal(loss, smoothed) and weight == 8
    assert float(sums["loss"]) == pytest.approx(8 * float(smoothed))
    # The test loss stays plain cross-entropy.
    assert float(eval_sums["loss"]) == pytest.approx(
        float(nn.functional.cross_entropy(output, y, reduction="sum")))


def _record_autocast(monkeypatch) -> list[tuple[bool, bool, torch.dtype]]:
    """Every forward of the model: (training?, autocast on?, output dtype)."""
    seen = []
    task = get_task("digits")
    real = task.build_model

    def build_model(cfg, data):
        model = real(cfg, data)
        model.register_forward_hook(lambda m, args, out: seen.append(
            (m.training, torch.is_autocast_enabled("cpu"), out.dtype)))
        return model

    monkeypatch.setattr(task, "build_model", build_model)
    return seen


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_reaches_training_and_evaluation(tmp_path, monkeypatch, precision):
    seen = _record_autocast(monkeypatch)
    train(argv(tmp_path, "--epochs", "1", "--steps-per-epoch", "2", "--optimizer", "sam",
               "--precision", precision))
    bf16 = precision == "bf16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    assert {training for training, _, _ in seen} == {True, False}  # both were seen
    assert all(on == bf16 and out == dtype for _, on, out in seen), seen


def test_eval_every_evaluates_every_k_epochs_and_after_the_last(tmp_path):
    cfg = argv(tmp_path, "--epochs", "5", "--steps-per-epoch", "1", "--eval-every", "2")
    result = train(cfg)
    tests = [m["epoch"] for m in read_metrics(run_dir(cfg)) if m["split"] == "test"]
    trains = [m["epoch"] for m in read_metrics(run_dir(cfg)) if m["split"] == "train"]
    assert tests == [2, 4, 5] and trains == [1, 2, 3, 4, 5]
    assert result["final"]["epoch"] == 5


# -- what the loop does with them ----------------------------------------------------

def _record_lr(monkeypatch) -> list[float]:
    """The learning rate the base optimizer reads at each of its steps."""
    used = []
    real = engine.build_optimizer

    def build_optimizer(cfg, model, fused=False):
        optimizer, base = real(cfg, model, fused)
        base.register_step_pre_hook(
            lambda opt, args, kwargs: used.append(float(opt.param_groups[0]["lr"])))
        return optimizer, base

    monkeypatch.setattr(engine, "build_optimizer", build_optimizer)
    return used


@pytest.mark.parametrize("optimizer", ["sgd", "vasso"])
def test_each_step_trains_at_its_scheduled_rate(tmp_path, monkeypatch, optimizer):
    used = _record_lr(monkeypatch)
    cfg = argv(tmp_path, "--epochs", "3", "--steps-per-epoch", "4", "--warmup-epochs", "1",
               "--optimizer", optimizer)
    train(cfg)
    factor = engine.lr_factor(cfg, steps_per_epoch=4, total_steps=12)
    assert used == pytest.approx([cfg.lr * factor(step) for step in range(12)], rel=1e-12, abs=0)
    assert used[0] == cfg.lr / 4 and used[4] == cfg.lr  # warm-up from lr/4, then the peak


def test_each_epoch_trains_at_the_official_per_epoch_rate(tmp_path, monkeypatch):
    used = _record_lr(monkeypatch)
    cfg = argv(tmp_path, "--epochs", "3", "--steps-per-epoch", "2", "--schedule", "cosine-epoch",
               "--optimizer", "sam")
    train(cfg)
    peak, second = cfg.lr, cfg.lr * 0.75  # epochs 0 and 1 at the peak, then (1 + cos(pi/3)) / 2
    assert used == pytest.approx([peak, peak, peak, peak, second, second], rel=1e-12, abs=0)


def test_the_best_epoch_on_a_tie_is_the_first(tmp_path, monkeypatch):
    accuracies = iter([50.0, 70.0, 70.0, 60.0])
    monkeypatch.setattr(Trainer, "evaluate", lambda self: {"loss": 1.0, "acc": next(accuracies)})
    result = train(argv(tmp_path, "--epochs", "4", "--steps-per-epoch", "1"))
    assert result["best"] == {"epoch": 2, "step": 2, "test": {"loss": 1.0, "acc": 70.0}}
    assert result["final"]["test"]["acc"] == 60.0 and result["primary"] == "acc"


# -- resume with a model that draws from the global RNG --------------------------------

def _with_dropout(monkeypatch) -> None:
    """The digits model behind a dropout layer: training draws from torch's global RNG."""
    task = get_task("digits")
    real = task.build_model
    monkeypatch.setattr(task, "build_model",
                        lambda cfg, data: nn.Sequential(nn.Dropout(0.3), real(cfg, data)))


def _signal_after(monkeypatch, epoch: int, step_in_epoch: int) -> None:
    real = engine.Progress.step

    def step(self, step_now, loss, lr):
        real(self, step_now, loss, lr)
        if (self.epoch, step_now) == (epoch, step_in_epoch):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(engine.Progress, "step", step)


@pytest.mark.parametrize("optimizer", ["sam", "asam", "gsam", "vasso", "vasso-reuse", "sam-prob"])
def test_resume_mid_ascent_cycle_with_dropout_is_bit_exact(tmp_path, monkeypatch, optimizer):
    # ascent_every=3 and a stop after 5 steps, mid-cycle (step 5 does not ascend, step 6
    # does): the resumed optimizer's step counter decides which steps ascend; the
    # dropout masks after the resume come from the checkpoint's RNG state. The cheaper
    # steps too: the last perturbation (reuse) and the ascent draws (prob) resume.
    method, _, mode = optimizer.partition("-")
    schedule = ["--ascent-prob", "0.4"] if mode == "prob" else ["--ascent-every", "3"]
    options = ["--epochs", "3", "--steps-per-epoch", "4", "--optimizer", method, *schedule]
    if optimizer == "gsam":
        options += ["--gsam-rho-min", "0.01", "--gsam-alpha", "0.2"]
    if mode == "reuse":
        options += ["--skip", "reuse", "--update-on-reuse"]
    _with_dropout(monkeypatch)
    reference = argv(tmp_path / "reference", *options)
    train(reference)

    cfg = argv(tmp_path / "resumed", *options)
    with monkeypatch.context() as patch:
        _signal_after(patch, epoch=1, step_in_epoch=1)
        with pytest.raises(Preempted):
            train(cfg)
    position = torch.load(run_dir(cfg) / "checkpoint.pt", weights_only=True)["position"]
    assert (position["epoch"], position["step"]) == (1, 5)
    train(cfg)

    assert read_metrics(run_dir(cfg)) == read_metrics(run_dir(reference))
    assert read_result(run_dir(cfg)) == read_result(run_dir(reference))
    if not mode:  # 12 steps, of which 0, 3, 6 and 9 ascend: the count survives the resume
        assert read_result(run_dir(cfg))["passes"] == 16
    ours = torch.load(run_dir(cfg) / "checkpoint.pt", weights_only=True)
    theirs = torch.load(run_dir(reference) / "checkpoint.pt", weights_only=True)
    for name, tensor in theirs["model"].items():
        assert torch.equal(ours["model"][name], tensor), name
