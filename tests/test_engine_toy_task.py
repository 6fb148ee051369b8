"""A task that is not classification, defined here, through the whole engine (#11).

A noisy linear regression scored by the Pearson correlation of its predictions with
the targets, computed by the task's own ``evaluate`` over the gathered predictions
(the primary metric), beside the mean squared error from device-side sums. Batches
are dicts of tensors, of varying size (a plan per (seed, epoch), like token-count
batching). It trains with AdamW, a linear warm-up then linear decay, gradient
clipping and SAM, measured in steps, evaluated and checkpointed every few steps;
it resumes bit-exactly after SIGKILL; and ``results/`` renders it under its own
metric names.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from benchmarks import config, tasks
from benchmarks.config import ConfigError, TrainConfig, run_dir
from benchmarks.data import derive_seed, epoch_permutation
from benchmarks.engine import train
from benchmarks.experiments import Experiment
from benchmarks.tasks.base import Metric, Task, TaskData, TrainLoss, data_seed
from bench_fixtures import REPO, kill_at_first_checkpoint, read_metrics, read_result
from results.grid import ExperimentError, collect
from results.render import markdown

SIZES = (12, 20, 28)  # the batch sizes a plan cycles through: the weights differ per step


class Samples(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[key], "y": self.y[key]}


class ToyRegression(Task):
    name = "toy"
    metrics = (Metric("pearson", higher_is_better=True, format=".4f", title="Pearson r",
                      bounds=(-1.0, 1.0)),
               Metric("mse", higher_is_better=False, format=".4f", title="MSE"))
    primary = "pearson"

    def load_data(self, cfg: TrainConfig) -> TaskData:
        gen = torch.Generator().manual_seed(derive_seed("toy-data"))
        w = torch.randn(8, generator=gen)
        x = torch.randn(400, 8, generator=gen)
        y = x @ w + 0.5 * torch.randn(400, generator=gen)
        return TaskData(train=Samples(x[:320], y[:320]), test=Samples(x[320:], y[320:]),
                        in_memory=True)

    def build_model(self, cfg: TrainConfig, data: TaskData) -> nn.Module:
        return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def plan_batches(self, cfg: TrainConfig, data: TaskData, epoch: int) -> list[list[int]]:
        order = epoch_permutation(len(data.train), data_seed(cfg, "batches"), epoch).tolist()
        plan, start = [], 0
        for size in SIZES * 4:  # 4 x 60 = 240 of the 320 samples, in 12 batches
            plan.append(order[start:start + size])
            start += size
        return plan

    def plan_eval(self, cfg: TrainConfig, data: TaskData) -> list[list[int]]:
        return [list(range(s, min(s + 32, len(data.test)))) for s in range(0, len(data.test), 32)]

    def loss(self, model, batch, cfg) -> TrainLoss:
        prediction = model(batch["x"]).squeeze(1)
        loss = nn.functional.mse_loss(prediction, batch["y"])
        return TrainLoss(loss, {"se": loss.detach() * len(prediction)}, len(prediction))

    def summarize(self, sums, weight) -> dict[str, float]:
        return {"mse": sums["se"] / weight}

    @torch.no_grad()
    def evaluate(self, model, batches, cfg, data=None) -> dict[str, float]:
        pairs = [(model(b["x"]).squeeze(1), b["y"]) for b in batches]
        prediction, target = (torch.cat(t).double() for t in zip(*pairs))
        r = torch.corrcoef(torch.stack([prediction, target]))[0, 1]
        return {"pearson": float(r), "mse": float(((prediction - target) ** 2).mean())}


DEFAULTS = dict(dataset="toy", model="toy_mlp", lr=0.01, weight_decay=0.01, epochs=3,
                batch_size=16, cutout_prob=0.0, norm_stats="dataset", schedule="linear",
                bn_stats="first", threads=1)


def register_toy() -> None:
    tasks.register(ToyRegression(), datasets=("toy",), models=("toy_mlp",), defaults=DEFAULTS)


@pytest.fixture(autouse=True)
def toy_task(monkeypatch):
    """Registered for this test only: the registries are put back afterwards."""
    for registry in (tasks.TASKS, config.TASK_DATASETS, config.TASK_MODELS, config.TASK_DEFAULTS):
        monkeypatch.setitem(registry, "toy", None)
    register_toy()


def toy(runs_dir, **kw) -> TrainConfig:
    fields = dict(optimizer="sam", base="adamw", rho=0.05, max_steps=60, warmup_steps=10,
                  schedule="linear", clip_grad_norm=0.5, eval_every_steps=8,
                  checkpoint_every_steps=4, progress="none", runs_dir=str(runs_dir))
    return TrainConfig("toy", **{**fields, **kw})


@pytest.fixture
def reference(tmp_path):
    cfg = toy(tmp_path / "reference")
    return cfg, train(cfg)


def test_the_toy_task_trains_by_steps_under_its_own_metrics(reference):
    cfg, result = reference
    run = run_dir(cfg)
    assert result["primary"] == "pearson" and result["steps"] == 60 and result["epochs"] == 5
    assert result["final"]["test"]["pearson"] > 0.9  # it learned the linear map
    assert set(result["final"]["train"]) == {"mse"}
    lines = read_metrics(run)
    tests = [m for m in lines if m["split"] == "test"]
    # Every 8 steps (12 steps an epoch: some inside an epoch, epoch a fraction) and each epoch's end.
    assert [m["step"] for m in tests] == [8, 12, 16, 24, 32, 36, 40, 48, 56, 60]
    assert tests[0]["epoch"] == pytest.approx(8 / 12) and tests[1]["epoch"] == 1
    best = max(tests, key=lambda m: m["pearson"])
    assert result["best"]["test"] == {"pearson": best["pearson"], "mse": best["mse"]}
    assert result["best"]["step"] == best["step"]
    # The training mse is the sample-weighted mean over batches of 12, 20 and 28.
    assert all(set(m) == {"epoch", "step", "lr", "split", "mse"} for m in lines if m["split"] == "train")
    # Linear warm-up over 10 steps, then a straight line to 0 at step 60.
    lrs = {m["step"]: m["lr"] for m in lines}
    assert lrs[60] == 0.0 and lrs[36] == pytest.approx(cfg.lr * (1 - (36 - 10) / 50))


def test_sam_clips_the_descent_gradient_only(tmp_path):
    # One step by hand: the base optimizer sees the gradient at w + e clipped to 0.5.
    cfg = toy(tmp_path)
    from benchmarks.engine import build_optimizer
    model = nn.Linear(8, 1)
    opt, base = build_optimizer(cfg, model)
    assert opt.clip_grad_norm == 0.5
    seen = []
    base.register_step_pre_hook(lambda o, a, k: seen.append(
        float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))))
    x, y = 10 * torch.randn(32, 8), torch.randn(32)
    opt.step(lambda: nn.functional.mse_loss(model(x).squeeze(1), y).backward())
    assert seen == [pytest.approx(0.5)]


def test_sigkill_then_relaunch_equals_uninterrupted(tmp_path):
    # Long enough to be killed after its first checkpoint (step 40) and before its end.
    steps = dict(max_steps=240, eval_every_steps=30, checkpoint_every_steps=40)
    cfg, full = toy(tmp_path / "killed", **steps), toy(tmp_path / "full", **steps)
    train(full)
    run = run_dir(cfg)
    script = (f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); "
              "import test_engine_toy_task as t; t.register_toy(); "
              "from benchmarks.__main__ import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script, *config.to_argv(cfg)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    kill_at_first_checkpoint(proc, run)
    train(cfg)  # the relaunch resumes from the last checkpoint
    assert read_metrics(run) == read_metrics(run_dir(full))
    assert read_result(run) == read_result(run_dir(full))
    ours = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    theirs = torch.load(run_dir(full) / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(ours[name], tensor) for name, tensor in theirs.items())


def test_the_table_shows_the_tasks_own_metrics(tmp_path):
    cells = tuple(dataclasses.replace(toy(tmp_path, max_steps=24), experiment="toy-table", seed=seed,
                                      optimizer=optimizer)
                  for optimizer in ("sgd", "sam") for seed in (0, 1))
    for cfg in cells:
        train(cfg)
    experiment = Experiment(name="toy-table", title="Toy regression", cells=cells,
                            columns=("dataset",), metrics=("pearson", "mse"))
    table = markdown(collect(experiment, tmp_path, slurm_jobs={}))
    assert "Test Pearson r / MSE at the final evaluation" in table
    sgd_row = next(line for line in table.splitlines() if line.startswith("| sgd"))
    values = [read_result(run_dir(c))["final"]["test"] for c in cells if c.optimizer == "sgd"]
    pearson = sum(v["pearson"] for v in values) / 2
    assert f"{pearson:.4f} ± " in sgd_row and " / " in sgd_row and sgd_row.endswith("(2) |")

    unknown = dataclasses.replace(experiment, metrics=("bleu",))
    with pytest.raises(ExperimentError, match="toy task has no metric 'bleu'; its metrics: pearson, mse"):
        collect(unknown, tmp_path, slurm_jobs={})


def test_the_length_is_given_once(tmp_path):
    with pytest.raises(ConfigError, match="--epochs=3 and --max-steps=60: give the length"):
        TrainConfig("toy", epochs=3, max_steps=60)
    with pytest.raises(ConfigError, match="valid choices: cosine, cosine-epoch, constant, linear, inverse-sqrt"):
        TrainConfig("toy", schedule="step")
    assert math.isfinite(TrainConfig("toy", max_steps=5).lr)


def test_results_cli_refuses_an_unknown_metric_in_one_line(tmp_path, capsys):
    from results.cli import main as results_main

    module = tmp_path / "my_experiments.py"
    module.write_text(
        "from benchmarks.config import TrainConfig\n"
        "from benchmarks.experiments import Experiment\n"
        "cells = (TrainConfig('toy', max_steps=5, experiment='toy-bleu'),)\n"
        "EXPERIMENTS = {'toy-bleu': Experiment('toy-bleu', 'Toy', cells, metrics=('bleu',))}\n")
    runs = tmp_path / "runs"
    runs.mkdir()
    code = results_main(["toy-bleu", "--experiments-module", str(module), "--runs-dir", str(runs),
                         "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "toy task has no metric 'bleu'; its metrics: pearson, mse" in err


def test_an_undeclared_or_missing_metric_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(ToyRegression, "evaluate", lambda self, model, batches, cfg, data=None: {
        "pearson": 0.5, "r2": 0.2})
    with pytest.raises(ValueError, match=r"evaluate returned \['r2'\], which it does not declare; "
                                         "its metrics: pearson, mse"):
        train(toy(tmp_path, max_steps=2, warmup_steps=1))
    monkeypatch.setattr(ToyRegression, "evaluate", lambda self, model, batches, cfg, data=None: {"mse": 1.0})
    with pytest.raises(ValueError, match="returned no 'pearson', its primary metric"):
        train(toy(tmp_path / "2", max_steps=2, warmup_steps=1))
    monkeypatch.setattr(ToyRegression, "primary", "r2")
    with pytest.raises(ConfigError, match="toy task has no metric 'r2'; its metrics: pearson, mse"):
        train(toy(tmp_path / "3", max_steps=2, warmup_steps=1))
