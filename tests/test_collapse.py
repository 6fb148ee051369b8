"""Collapsed runs (issue #19): the engine's rule, its records, and how results/ shows them."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import collapse
from benchmarks.config import TrainConfig, cell_id, parse_argv, run_dir, to_argv
from benchmarks.engine import Collapsed, train
from benchmarks.experiments import Experiment
from results.grid import collect
from results.render import latex, markdown
from results.runs import load_run
from tests.test_results_fixtures import write_config, write_done

LN10 = math.log(10)


def first_collapse(losses: list[float], num_classes: int = 10) -> dict | None:
    """The verdict the engine reaches after each epoch; the first one found, or None."""
    streak = None
    for epoch, loss in enumerate(losses, start=1):
        streak = collapse.update(streak, epoch, loss, num_classes)
        found = collapse.verdict(streak, num_classes)
        if found is not None:
            return {**found, "found_at": epoch}
    return None


def test_rule_on_the_measured_training_losses():
    # VaSSO, 20% noise, seed 5, the old demo recipe (no warm-up): dead from epoch 2 on.
    dead = [3.9559, 2.3063, 2.3035, 2.3031, 2.3031, 2.3032, 2.3032, 2.3030, 2.3034]
    found = first_collapse(dead)
    assert (found["since_epoch"], found["found_at"]) == (2, 6)
    assert found["uniform_loss"] == pytest.approx(LN10)
    # SAM, 60% noise, seed 4, one epoch of warm-up: at chance for epochs 2-5, then it learns.
    recovered = [3.5639, 2.3250, 2.3041, 2.2990, 2.2861, 2.2604, 2.2141, 2.1962, 2.1693]
    assert first_collapse(recovered) is None
    # Coming down from a blow-up far above ln C is progress, however slow the start.
    assert first_collapse([40.0, 20.0, 9.0, 5.0, 3.5, 2.9, 2.5, 2.4]) is None
    # Stuck above ln C (confidently wrong, not learning) is a collapse too.
    assert first_collapse([9.0, 9.1, 8.99, 9.05, 9.02])["since_epoch"] == 1
    # A healthy run, and a task whose loss is not over >= 2 classes, are never judged collapsed.
    assert first_collapse([2.0, 1.5, 1.2, 1.0, 0.9, 0.8]) is None
    assert first_collapse([0.0] * 8, num_classes=1) is None


def test_stop_on_collapse_is_an_option_not_part_of_the_cell():
    cfg = parse_argv(["digits", "--stop-on-collapse"])
    assert cfg.stop_on_collapse and not TrainConfig("digits").stop_on_collapse
    assert cell_id(cfg) == cell_id(TrainConfig("digits"))
    assert parse_argv(to_argv(cfg)) == cfg


def old_demo_cell(root, seed: int, **kw) -> TrainConfig:
    """The demo recipe before issue #19 (no warm-up), cut to 6 epochs: the fewest that
    show a collapse from epoch 2 (5 stuck epochs)."""
    return TrainConfig("digits", optimizer="vasso", rho=0.05, theta=0.4, label_noise=0.2,
                       seed=seed, lr=0.05, weight_decay=1e-3, epochs=6, batch_size=64,
                       experiment="old-demo", runs_dir=str(root), progress="none", **kw)


def test_a_collapsed_cell_of_the_old_demo_is_recorded_and_marked_in_the_table(tmp_path, capsys):
    """VaSSO at 20% noise, seed 5, reproduced: the network dies in its first steps."""
    collapsed = old_demo_cell(tmp_path, seed=5, stop_on_collapse=True)
    healthy = old_demo_cell(tmp_path, seed=0)
    write_done(healthy, 95.5)  # a live seed beside it (written, not trained)
    experiment = Experiment("old-demo", "old demo", (healthy, collapsed), columns=("label_noise",))
    path = run_dir(collapsed)

    # Asked to stop: it stops once found, as a failure that says why.
    with pytest.raises(Collapsed, match="since epoch 2"):
        train(collapsed)
    assert "the run has collapsed" in capsys.readouterr().err
    error = json.loads((path / "error.json").read_text())
    assert error["type"] == "Collapsed" and not (path / "result.json").exists()
    [noted] = json.loads((path / "meta.json").read_text())["collapses"]
    assert (noted["since_epoch"], noted["found_at_epoch"]) == (2, 6)
    assert "1 of 2 runs collapsed (stopped, no final numbers)" in markdown(collect(experiment, tmp_path))

    # Not asked to stop (the default): it trains every epoch and says so in result.json.
    result = train(old_demo_cell(tmp_path, seed=5))
    assert result["collapse"]["since_epoch"] == 2
    assert result["final"]["test"]["acc"] < 15  # chance: 10%
    assert load_run(collapsed, path, {}).collapsed

    grid = collect(experiment, tmp_path)
    table = markdown(grid)
    acc = result["final"]["test"]["acc"]
    mean, std = (95.5 + acc) / 2, abs(95.5 - acc) / math.sqrt(2)
    assert f"all: {mean:.2f} ± {std:.2f} (2); 1 of 2 runs collapsed; excl. collapsed: 95.50 (1)" in table
    assert f"vasso · label_noise=0.2 · seed 5: collapsed since epoch 2 ({acc:.2f}, in \"all\" only)" in table
    assert "1 of 2 runs collapsed" in latex(grid)


def test_diverged_runs_are_counted_beside_the_mean(tmp_path):
    cells = tuple(old_demo_cell(tmp_path, seed=s) for s in range(3))
    write_done(cells[0], 95.0)
    write_done(cells[1], 96.0)
    path = write_config(cells[2])
    (path / "error.json").write_text(json.dumps({
        "type": "NonFiniteLoss", "message": "non-finite training loss nan at step 12", "step": 12}))
    grid = collect(Experiment("old-demo", "old demo", cells, columns=("label_noise",)), tmp_path)
    table = markdown(grid)
    assert "95.50 ± 0.71 (2/3); 1 of 3 runs diverged (no final numbers)" in table
    assert "a diverged run (non-finite loss) has no final numbers" in table


def test_first_steps_script_traces_a_cell_from_its_own_start():
    """scripts/first_steps.py (docs/collapse.md's numbers): SGD and SAM start from the same
    weights on the same batch, and SAM descends along the larger gradient at w + e."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "first_steps.py"
    spec = importlib.util.spec_from_file_location("first_steps", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["digits", "--rho", "0.05", "--lr", "0.05", "--label-noise", "0.6", "--seed", "4"]
    sgd = list(script.trace([*argv, "--optimizer", "sgd"], steps=2))
    sam = list(script.trace([*argv, "--optimizer", "sam"], steps=2))
    assert [r["step"] for r in sam] == [0, 1] and "loss@w+e" not in sgd[0]
    assert sam[0]["loss"] == sgd[0]["loss"] and sam[0]["|g|"] == pytest.approx(sgd[0]["|g|"])
    assert sam[0]["|g@w+e|"] > sam[0]["|g|"] and sam[0]["|dw|"] > sgd[0]["|dw|"]
    assert all(0 <= a <= 1 for r in sam for a in r["alive"]) and len(sam[0]["alive"]) == 2
