"""The paper's CIFAR recipe as the official VaSSO code ran it (docs/recipe.md).

The official loop sets its cosine learning rate once per epoch, after the epoch, with
the index of the epoch just finished (``lr_scheduler.step(epoch)``); the schedule
``cosine-epoch`` must reproduce the rates that stepping gives, step by step. The
recipe table of docs/recipe.md is read here and checked against the cells of the
paper's experiments, so the document and the code cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR

from benchmarks import engine
from benchmarks import experiments as E
from benchmarks.config import ConfigError, TrainConfig, run_dir
from bench_fixtures import read_metrics
from results import reference

RECIPE = Path(__file__).resolve().parent.parent / "docs" / "recipe.md"
PAPER_CIFAR = ("cifar10", "cifar100", "label-noise", "theta")


def official_rates(epochs: int, steps_per_epoch: int, lr: float) -> list[float]:
    """The rate of every step as the official loop gives it: torch's cosine scheduler,
    built before training and stepped with the finished epoch's index after each epoch."""
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=lr, momentum=0.9)
    scheduler = CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0.0)
    rates = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            rates.append(optimizer.param_groups[0]["lr"])
        with warnings.catch_warnings():  # step(epoch) is deprecated: the official code uses it
            warnings.simplefilter("ignore")
            scheduler.step(epoch)
    return rates


def upstream_closed_form(epoch: int, epochs: int, lr: float) -> float:
    """The official CosineLRscheduler.get_lr(epoch) without warm-up (eta_min 0), written
    from its formula: lr (1 + cos(pi epoch / T_max)) / 2, T_max = epochs."""
    return lr * (1 + math.cos(math.pi * epoch / epochs)) / 2


def suite_rates(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The rate of every step as the engine drives it: LambdaLR over lr_factor, one
    scheduler step after every optimizer step."""
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=cfg.lr, momentum=0.9)
    scheduler = LambdaLR(optimizer, engine.lr_factor(cfg, steps_per_epoch, cfg.epochs * steps_per_epoch))
    rates = []
    for _ in range(cfg.epochs * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("epochs, steps_per_epoch", [(5, 3), (200, 4)])
def test_cosine_epoch_reproduces_the_official_stepping_step_by_step(epochs, steps_per_epoch):
    cfg = TrainConfig("cifar", epochs=epochs, lr=0.05, schedule="cosine-epoch")
    official = official_rates(epochs, steps_per_epoch, cfg.lr)
    ours = suite_rates(cfg, steps_per_epoch)
    assert len(ours) == len(official) == epochs * steps_per_epoch
    for step, (a, b) in enumerate(zip(ours, official)):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15), f"step {step}"
    # The same rates from the upstream scheduler's own formula, epoch e at index e - 1.
    for step, rate in enumerate(ours):
        finished = max(step // steps_per_epoch - 1, 0)
        assert rate == pytest.approx(upstream_closed_form(finished, epochs, cfg.lr), rel=1e-12)
    # What that stepping means: epochs 0 and 1 at the peak, the last epoch above 0.
    per_epoch = ours[::steps_per_epoch]
    assert per_epoch[0] == per_epoch[1] == cfg.lr
    assert per_epoch[-1] == pytest.approx(upstream_closed_form(epochs - 2, epochs, cfg.lr))
    assert per_epoch[-1] > 0
    # The suite's own per-step cosine is another schedule (the ablation).
    per_step = suite_rates(dataclasses.replace(cfg, schedule="cosine"), steps_per_epoch)
    assert per_step[1] < cfg.lr and per_step != ours


def test_the_engine_trains_with_the_per_epoch_rates(tmp_path):
    # digits, 3 epochs of 3 steps: the rate logged after epoch e is the one epoch e + 1 uses.
    cfg = TrainConfig("digits", epochs=3, steps_per_epoch=3, batch_size=32, progress="none",
                      runs_dir=str(tmp_path), schedule="cosine-epoch")
    engine.train(cfg)
    logged = [m["lr"] for m in read_metrics(run_dir(cfg)) if m["split"] == "train"]
    assert logged == pytest.approx([upstream_closed_form(k, 3, cfg.lr) for k in (0, 1, 2)])


def test_cosine_epoch_refuses_a_warm_up():
    with pytest.raises(ConfigError, match="--warmup-epochs.*cosine-epoch"):
        TrainConfig("cifar", schedule="cosine-epoch", warmup_epochs=1.0)


# -- docs/recipe.md against the experiments ------------------------------------------

def recipe_rows() -> list[dict[str, str]]:
    """The rows of the one table of docs/recipe.md, keyed by its header (as the report reads them)."""
    lines = [line for line in RECIPE.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    assert set(lines[1].replace("|", "").strip()) <= set("-: "), "the table's second line is its rule"
    rows = reference.recipe_rows(RECIPE)
    assert len(rows) == len(lines) - 2 and all(len(row) == len(rows[0]) for row in rows)
    return rows


def ticked(text: str) -> str | None:
    """The text of a cell that is one `code span`, else None."""
    match = re.fullmatch(r"`([^`]+)`", text)
    return match.group(1) if match else None


def as_value(text: str):
    """A backticked suite value as Python: JSON numbers and booleans, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def test_recipe_table_matches_every_cell_of_the_paper_experiments():
    rows = recipe_rows()
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    checked = set()
    for row in rows:
        name = ticked(row["field"])
        if name is None:
            assert row["field"] == "—", f"field column of {row['setting']!r}: a `field` or —"
            continue
        assert name in fields, f"{row['setting']!r} names {name!r}, not a TrainConfig field"
        value = ticked(row["suite default (paper experiments)"])
        if value is None:  # per model (rho, theta): checked by tests/test_experiments.py
            continue
        expected = as_value(value)
        for experiment in PAPER_CIFAR:
            for cell in E.get(experiment).cells:
                if experiment == "theta" and name == "theta":
                    continue  # the sweep's own axis
                assert getattr(cell, name) == expected, (experiment, name, getattr(cell, name), expected)
        checked.add(name)
    # Every setting COMMON_CIFAR makes is documented, and checked against the cells.
    assert set(E.COMMON_CIFAR) - {"task"} <= checked
    # Every row says where the official value comes from, or that there is none.
    for row in rows:
        official = row["official code (file:line)"]
        assert re.search(r"\w+\.(py|sh|md):\d+", official) or official.startswith("none"), row["setting"]
        assert row["why they differ"], row["setting"]


def test_recipe_table_flags_what_rests_on_the_upstream_code():
    # A row citing the upstream SSAM repository (VaSSO's own copy is not in our index)
    # says *unverified*, and PyramidNet-110's alpha and block are unverified.
    for row in recipe_rows():
        text = " ".join(row.values())
        if "SSAM " in row["official code (file:line)"]:
            assert "*unverified*" in text, row["setting"]
    pyramid = next(row for row in recipe_rows() if row["setting"] == "PyramidNet-110")
    assert "*unverified*" in pyramid["why they differ"]
    assert ticked(pyramid["suite default (paper experiments)"]) == str(TrainConfig("cifar").pyramidnet_alpha)


def test_slurm_plan_shows_the_official_settings(capsys, tmp_path):
    from slurm import cli

    assert cli.main(["plan", "cifar10", "--runs-dir", str(tmp_path)]) == 0
    shared = capsys.readouterr().out.splitlines()[-1]
    assert shared.startswith("every cell: ")
    settings = dict(item.split("=", 1) for item in shared.removeprefix("every cell: ").split())
    assert {k: settings[k] for k in ("schedule", "bn_stats", "cutout_prob", "norm_stats",
                                     "epochs", "batch_size", "lr", "momentum")} == {
        "schedule": "cosine-epoch", "bn_stats": "both", "cutout_prob": "0.5",
        "norm_stats": "official", "epochs": "200", "batch_size": "128", "lr": "0.05",
        "momentum": "0.9"}
    assert "experiment" not in settings and "model" not in settings  # model varies: in the table


def test_recipe_experiment_ablates_one_preference_at_a_time():
    recipe = E.get("recipe")
    settings = ("schedule", "bn_stats", "norm_stats", "cutout_prob")
    official = {k: E.COMMON_CIFAR[k] for k in settings}
    seen = set()
    paper = {(c.optimizer, c.seed): c for c in E.get("cifar10").cells if c.model == "resnet18"}
    for cell in recipe.cells:
        changed = {k: getattr(cell, k) for k in settings if getattr(cell, k) != official[k]}
        assert len(changed) <= 1, changed  # one deviation per column, or none
        seen.add(tuple(changed.items()))
        # Everything else is the paper's CIFAR-10 ResNet-18 cell of the same method and seed.
        twin = dataclasses.replace(paper[(cell.optimizer, cell.seed)], experiment="recipe", **changed)
        assert twin == cell
    assert seen == {(), (("schedule", "cosine"),), (("bn_stats", "first"),),
                    (("norm_stats", "dataset"),), (("cutout_prob", 1.0),)}
    assert len(recipe.cells) == 5 * 2 * 3


def test_evaluation_leaves_the_global_rng_to_the_model(tmp_path):
    """The official VGG-11-BN draws dropout masks from the global torch RNG; the
    DataLoader path's evaluation must not draw from it (the fast path does not), or the
    two paths train the same cell with other masks after the first evaluation."""
    from benchmarks.engine import StopSignals, Trainer
    from benchmarks.rundir import RunDir
    from benchmarks.tasks import get_task

    cfg = TrainConfig("digits", epochs=1, batch_size=32, progress="none", runs_dir=str(tmp_path))
    task = get_task("digits")
    trainer = Trainer(cfg, task, task.load_data(cfg), torch.device("cpu"), RunDir(run_dir(cfg)),
                      StopSignals())
    state = torch.get_rng_state()
    trainer.evaluate()
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.slow
def test_vgg_dropout_gives_the_same_run_on_both_paths(tmp_path):
    from bench_fixtures import write_cifar10

    write_cifar10(tmp_path / "data")

    def cell(fast: str) -> TrainConfig:
        return TrainConfig("cifar", model="vgg11_bn", optimizer="vasso", rho=0.1, theta=0.4,
                           epochs=2, steps_per_epoch=2, batch_size=8, num_workers=0, progress="none",
                           data_dir=str(tmp_path / "data"), runs_dir=str(tmp_path / fast),
                           device="cpu", fast=fast)

    off, on = cell("off"), cell("on")
    engine.train(off)
    engine.train(on)
    for a, b in zip(read_metrics(run_dir(off)), read_metrics(run_dir(on))):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6), a
