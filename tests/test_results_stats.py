"""Paired statistics under the tables: seed-by-seed differences, t-intervals, daggers, --baseline."""

from __future__ import annotations

import pytest
from scipy import stats as scipy_stats

from benchmarks.experiments import Experiment
from results.cli import main, render, tables_with_numbers
from results.grid import collect
from results.render import latex, markdown
from results.stats import UnknownBaseline, paired
from test_results_fixtures import cifar_cell, write_done

NO_SLURM: dict[str, str] = {}


def test_paired_interval_is_scipys_paired_t_interval():
    a = {0: 96.1, 1: 95.4, 2: 96.9, 3: 96.0}
    b = {0: 95.8, 1: 95.5, 2: 96.2, 3: 95.1}
    result = paired(a, b)
    reference = scipy_stats.ttest_rel(list(a.values()), list(b.values())).confidence_interval(0.95)
    assert result.n == 4
    assert result.mean == pytest.approx(0.45)
    assert (result.low, result.high) == pytest.approx((reference.low, reference.high))


def test_only_seeds_both_finished_are_paired():
    # Seed 2 of b and seed 3 of a have no partner: unpaired, a - b would be +1.0 from seed 0 and 1 alone.
    result = paired({0: 91.0, 1: 92.0, 3: 50.0}, {0: 90.0, 1: 91.0, 2: 99.0})
    assert result.n == 2 and result.mean == pytest.approx(1.0)
    assert (result.low, result.high) == pytest.approx((1.0, 1.0))  # equal differences: no spread
    assert result.distinguishable
    assert str(paired({0: 91.0}, {0: 90.0})) == "+1.00, n = 1: one seed: no interval"
    assert str(paired({0: 91.0}, {1: 90.0})).startswith("—, n = 0")


def experiment_with(root, finals: dict[str, list[float]], columns=("resnet18",)) -> Experiment:
    cells = []
    for model in columns:
        for optimizer, values in finals.items():
            for seed, final in enumerate(values):
                cfg = cifar_cell(root, "mine", model, optimizer, seed)
                cells.append(cfg)
                write_done(cfg, final)
    return Experiment(name="mine", title="Mine", cells=tuple(cells))


def table(root, experiment, baseline=None) -> str:
    return markdown(collect(experiment, runs_dir=root, slurm_jobs=NO_SLURM), baseline)


def test_vasso_against_sam_in_words_under_the_table(tmp_path):
    # Differences 0.3, -0.1, 0.4: mean +0.20, sd 0.265, t(2) 4.303 -> half-width 0.66.
    experiment = experiment_with(tmp_path, {"sgd": [90.0, 90.0, 90.0], "sam": [96.0, 96.5, 96.0],
                                            "vasso": [96.3, 96.4, 96.4]})
    text = table(tmp_path, experiment)
    assert "- vasso - sam on resnet18: +0.20 [-0.46, +0.86], n = 3: not distinguishable from zero" in text
    assert "sgd -" not in text and "- sgd" not in text  # SGD only against a --baseline
    # VaSSO's best mean is not distinguishable from SAM's: bold with a dagger.
    assert "| vasso | **96.37 ± 0.06**† (3) |" in text
    assert r"\textbf{96.37 $\pm$ 0.06}$^\dagger$ (3)" in latex(collect(experiment, runs_dir=tmp_path,
                                                                             slurm_jobs=NO_SLURM))


def test_a_best_distinguishable_from_the_runner_up_has_no_dagger(tmp_path):
    experiment = experiment_with(tmp_path, {"sam": [96.0, 96.5, 96.0], "vasso": [97.0, 97.4, 97.1]})
    text = table(tmp_path, experiment)
    assert "| vasso | **97.17 ± 0.21** (3) |" in text
    assert "- vasso - sam on resnet18: +1.00 [+0.75, +1.25], n = 3: distinguishable from zero (higher)" in text


def test_every_method_against_a_chosen_baseline(tmp_path):
    experiment = experiment_with(tmp_path, {"sgd": [90.0, 91.0], "sam": [92.0, 94.0], "vasso": [93.0, 93.0]})
    text = table(tmp_path, experiment, baseline="sgd")
    lines = [line for line in text.splitlines() if " - sgd " in line]
    assert lines == ["- sam - sgd on resnet18: +2.50 [-3.85, +8.85], n = 2: not distinguishable from zero",
                     "- vasso - sgd on resnet18: +2.50 [-3.85, +8.85], n = 2: not distinguishable from zero"]
    with pytest.raises(UnknownBaseline, match="'adamw' is not a method of experiment 'mine'; its rows are: sgd"):
        table(tmp_path, experiment, baseline="adamw")


def test_cli_unknown_baseline_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    experiment = experiment_with(tmp_path / "runs", {"sam": [96.0], "vasso": [97.0]})
    monkeypatch.setattr("benchmarks.experiments.get", lambda name, module=None: experiment)
    out = tmp_path / "out"
    assert main(["mine", "--runs-dir", str(tmp_path / "runs"), "--out", str(out), "--baseline", "asam"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--baseline 'asam' is not a method" in err
    assert not (out / "tables").exists() and not (out / "figures").exists()


def test_a_table_whose_numbers_all_carry_daggers_still_counts_as_holding_numbers(tmp_path):
    experiment = experiment_with(tmp_path / "runs", {"sam": [96.0], "vasso": [96.0]})  # a tie
    render(experiment, tmp_path / "runs", tmp_path / "out", "final")
    assert "**96.00**† (1)" in (tmp_path / "out/tables/mine.md").read_text()
    assert len(tables_with_numbers(tmp_path / "out", "mine")) == 2
