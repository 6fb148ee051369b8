"""Figures render, one line per method in its fixed colour; and the CLI writes tables and figures."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex

from benchmarks.config import TrainConfig
from benchmarks.experiments import Experiment, get
from results.cli import EmptyRendering, build_parser, main, render, tables_with_numbers
from results.grid import collect
from results.plots import PALETTE, method_colour, plot_curves, plot_sweep, save
from bench_fixtures import REPO
from test_results_fixtures import cifar_cell, golden_experiment, write_done, write_metrics

NO_SLURM: dict[str, str] = {}


def lines_by_label(ax) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in ax.lines:
        counts[line.get_label()] = counts.get(line.get_label(), 0) + 1
    return counts


def test_curves_one_line_per_method_with_its_colour_and_band(tmp_path):
    grid = collect(golden_experiment(tmp_path), runs_dir=tmp_path, slurm_jobs=NO_SLURM)
    problems = []
    fig = plot_curves(grid, problems)
    resnet18, wrn28_10, vgg11_bn = fig.axes[:3]
    assert [ax.get_title() for ax in (resnet18, wrn28_10, vgg11_bn)] == ["resnet18", "wrn28_10", "vgg11_bn"]
    assert lines_by_label(resnet18) == {"sgd (n=3)": 1, "sam (n=3)": 1, "vasso (n=3)": 1}
    for line in resnet18.lines:
        method = line.get_label().split(" ")[0]
        assert to_hex(line.get_color()) == PALETTE[method]
        assert list(line.get_xdata()) == [1, 2, 3]
    # The mean curve: sgd's seeds end at 96.0, 96.2, 96.4 (fixture: final-2, final-1, final).
    sgd = next(line for line in resnet18.lines if line.get_label().startswith("sgd"))
    assert list(sgd.get_ydata()) == pytest.approx([94.2, 95.2, 96.2])
    # A ±1 std band per method with several seeds; none for wrn28_10's single finished sgd seed.
    assert sum(isinstance(c, PolyCollection) for c in resnet18.collections) == 3
    assert lines_by_label(wrn28_10) == {"sgd (n=1)": 1} and not wrn28_10.collections
    assert not vgg11_bn.lines
    assert problems == []


def test_curves_survive_a_truncated_metrics_file(tmp_path):
    cells = [cifar_cell(tmp_path, "c", "resnet18", "sam", seed) for seed in range(2)]
    write_done(cells[0], 90.0)
    path = write_done(cells[1], 92.0)
    write_metrics(path, [88.0, 91.0, 92.0], truncate_last=True)
    problems = []
    fig = plot_curves(collect(Experiment("c", "c", tuple(cells)), runs_dir=tmp_path, slurm_jobs=NO_SLURM), problems)
    [line] = fig.axes[0].lines
    assert list(line.get_xdata()) == [1, 2]  # epoch 3 is only known for one seed: not averaged
    assert len(problems) == 1 and problems[0].path == path / "metrics.jsonl"


def sweep_experiment(root, name, column, values, methods):
    cells = []
    for optimizer, seeds_at in methods.items():
        for value in values if optimizer == "vasso" or column != "theta" else [0.9]:
            for seed in range(2):
                cfg = cifar_cell(root, name, "resnet18", optimizer, seed, **{column: value})
                cells.append(cfg)
                write_done(cfg, 80.0 + seeds_at + 10 * value + seed)
    figure = "noise" if column == "label_noise" else "theta"
    return Experiment(name, name, tuple(cells), columns=(column,), figure=figure)


def test_noise_figure_one_line_per_method_over_noise_rates(tmp_path):
    experiment = sweep_experiment(tmp_path, "label-noise", "label_noise", (0.25, 0.5, 0.75),
                                  {"sgd": 0, "sam": 1, "vasso": 2})
    fig = plot_sweep(collect(experiment, runs_dir=tmp_path, slurm_jobs=NO_SLURM))
    [ax] = fig.axes
    assert ax.get_xlabel() == "label noise (%)"
    assert lines_by_label(ax) == {"sgd": 1, "sam": 1, "vasso": 1}
    vasso = next(line for line in ax.lines if line.get_label() == "vasso")
    assert list(vasso.get_xdata()) == [25, 50, 75]
    assert [round(y, 6) for y in vasso.get_ydata()] == [85.0, 87.5, 90.0]  # 82 + 10x + mean(0, 1)
    assert to_hex(vasso.get_color()) == PALETTE["vasso"]
    # Its band is +-1 sample std of seeds 0 and 1: sqrt(1/2) either side of the mean.
    [band] = [c for c in ax.collections if to_hex(c.get_facecolor()[0]) == PALETTE["vasso"]]
    ys = band.get_paths()[0].vertices[:, 1]
    assert (ys.min(), ys.max()) == pytest.approx((85.0 - 0.5**0.5, 90.0 + 0.5**0.5))


def test_theta_figure_draws_a_single_theta_method_as_a_level(tmp_path):
    experiment = sweep_experiment(tmp_path, "theta", "theta", (0.2, 0.4, 1.0), {"sam": 1, "vasso": 2})
    fig = plot_sweep(collect(experiment, runs_dir=tmp_path, slurm_jobs=NO_SLURM))
    [ax] = fig.axes
    assert ax.get_xlabel() == "theta"
    assert lines_by_label(ax) == {"sam": 1, "vasso": 1}
    sam = next(line for line in ax.lines if line.get_label() == "sam")
    assert sam.get_linestyle() == "--" and list(sam.get_ydata()) == [90.5, 90.5]


def test_palette_is_fixed_and_unknown_methods_are_stable():
    assert method_colour("VaSSO") == PALETTE["vasso"]
    assert method_colour("lookahead") not in PALETTE.values()
    # The same colour in every process: figures of one paper are drawn by several runs,
    # and Python salts str hashes per process (PYTHONHASHSEED).
    names = ["lookahead", "sgd-nesterov", "adahessian", "lion", "esam"]
    code = f"from results.plots import method_colour; print([method_colour(n) for n in {names!r}])"
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
        assert out.strip() == str([method_colour(n) for n in names])


def test_save_writes_pdf_and_png(tmp_path):
    grid = collect(golden_experiment(tmp_path), runs_dir=tmp_path, slurm_jobs=NO_SLURM)
    paths = save(plot_curves(grid), tmp_path / "figures" / "golden-curves")
    assert [p.name for p in paths] == ["golden-curves.pdf", "golden-curves.png"]
    assert paths[0].read_bytes().startswith(b"%PDF") and paths[1].read_bytes().startswith(b"\x89PNG")


def test_render_writes_tables_and_figures(tmp_path):
    experiment = sweep_experiment(tmp_path / "runs", "theta", "theta", (0.2, 1.0), {"vasso": 0})
    written, problems = render(experiment, tmp_path / "runs", tmp_path / "out", "final")
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in written)
    assert names == ["figures/theta-curves.pdf", "figures/theta-curves.png",
                     "figures/theta-theta.pdf", "figures/theta-theta.png",
                     "tables/theta.md", "tables/theta.tex"]
    table = (tmp_path / "out/tables/theta.md").read_text()
    # One method per column: nothing to compare, so nothing is bold.
    assert "| optimizer | theta=0.2 | theta=1.0 |\n|:---|---:|---:|\n| vasso | 82.50 ± 0.71 (2) | 90.50 ± 0.71 (2) |\n" in table
    assert problems == []


def test_render_lists_a_truncated_metrics_line_under_the_table(tmp_path):
    cells = [cifar_cell(tmp_path / "runs", "c", "resnet18", "sam", seed) for seed in range(2)]
    write_done(cells[0], 90.0)
    path = write_done(cells[1], 92.0)
    write_metrics(path, [88.0, 91.0, 92.0], truncate_last=True)
    _, problems = render(Experiment("c", "c", tuple(cells)), tmp_path / "runs", tmp_path / "out", "final")
    table = (tmp_path / "out/tables/c.md").read_text()
    assert "| sam | 91.00 ± 1.41 (2) |" in table  # result.json decides the number, not the cut curve
    assert f"- {path / 'metrics.jsonl'}: last line truncated (crash mid-write?); skipped" in table
    assert [p.path for p in problems] == [path / "metrics.jsonl"]


def test_cli_unknown_experiment_exits_2(capsys):
    assert main(["no-such-experiment"]) == 2
    assert "known experiments" in capsys.readouterr().err


def test_cli_renders_a_users_own_experiments_module(tmp_path, capsys, monkeypatch):
    """The experiments a user swept with `python -m slurm --experiments-module` render too."""
    module = tmp_path / "my_sweeps.py"
    module.write_text(textwrap.dedent("""
        from benchmarks.experiments import Experiment, grid
        EXPERIMENTS = {"mine": Experiment("mine", "My sweep", grid(
            {"task": "digits", "experiment": "mine"}, optimizer=["sgd", "vasso"], seed=[0, 1]),
            columns=("task",))}
    """))
    runs = tmp_path / "runs"
    for cfg in get("mine", str(module)).cells:
        final = {"sgd": 90.0, "vasso": 94.0}[cfg.optimizer] + cfg.seed
        write_done(dataclasses.replace(cfg, runs_dir=str(runs)), final=final)
    argv = ["mine", "--runs-dir", str(runs), "--out", str(tmp_path / "out")]
    assert main([*argv, "--experiments-module", str(module)]) == 0
    table = (tmp_path / "out/tables/mine.md").read_text()
    assert "| sgd | 90.50 ± 0.71 (2) |" in table and "| vasso | **94.50 ± 0.71** (2) |" in table, table
    assert (tmp_path / "out/figures/mine-curves.png").exists()

    monkeypatch.setenv("VASSO_EXPERIMENTS_MODULE", str(module))  # the same variable as python -m slurm
    (tmp_path / "out/tables/mine.md").unlink()
    assert main(argv) == 0 and (tmp_path / "out/tables/mine.md").read_text() == table
    capsys.readouterr()
    monkeypatch.delenv("VASSO_EXPERIMENTS_MODULE")
    assert main(argv) == 2 and "unknown experiment 'mine'" in capsys.readouterr().err


def test_cli_renders_an_unlaunched_experiment(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert main(["demo", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'out/tables/demo.md'}" in out and "no figure" in out
    table = (tmp_path / "out/tables/demo.md").read_text()
    assert "| vasso | — |" in table and "not launched" in table


def test_cli_refuses_a_runs_dir_that_does_not_exist_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["demo", "--runs-dir", str(tmp_path / "nonexistent"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"runs dir {tmp_path / 'nonexistent'} (--runs-dir) does not exist" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_never_replaces_a_table_with_numbers_by_an_empty_one_unless_asked(tmp_path, capsys):
    runs, elsewhere, out = tmp_path / "runs", tmp_path / "elsewhere", tmp_path / "out"
    experiment = sweep_experiment(runs, "theta", "theta", (0.2, 1.0), {"vasso": 0})
    elsewhere.mkdir()
    render(experiment, runs, out, "final")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(before) == 6
    assert tables_with_numbers(out, "theta") == [out / "tables/theta.md", out / "tables/theta.tex"]

    with pytest.raises(EmptyRendering, match=r"holds numbers: kept it.*--overwrite-empty"):
        render(experiment, elsewhere, out, "final")  # a typo in --runs-dir: nothing is done there
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    # Asked: the empty table replaces it, and the figures it would contradict go.
    written, _ = render(experiment, elsewhere, out, "final", overwrite_empty=True)
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["theta.md", "theta.tex"]
    assert "| vasso | — | — |" in (out / "tables/theta.md").read_text()
    assert tables_with_numbers(out, "theta") == []
    # Now the table has no numbers: an empty rendering may replace it without the flag.
    render(experiment, elsewhere, out, "final")


def test_cli_empty_rendering_is_one_line_and_exit_2(tmp_path, capsys):
    runs, elsewhere, out = tmp_path / "runs", tmp_path / "elsewhere", tmp_path / "out"
    elsewhere.mkdir()
    write_done(dataclasses.replace(get("demo").cells[0], runs_dir=str(runs)), final=91.0)
    assert main(["demo", "--runs-dir", str(runs), "--out", str(out)]) == 0
    table = (out / "tables/demo.md").read_text()
    capsys.readouterr()
    assert main(["demo", "--runs-dir", str(elsewhere), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--overwrite-empty" in err, err
    assert (out / "tables/demo.md").read_text() == table
    assert main(["demo", "--runs-dir", str(elsewhere), "--out", str(out), "--overwrite-empty"]) == 0
    assert (out / "tables/demo.md").read_text() != table


def test_outputs_live_outside_every_python_package():
    """Generated tables and figures go to their own folder, not inside a package's (results/ is one)."""
    repo = Path(__file__).resolve().parent.parent
    out = repo / build_parser().parse_args(["demo"]).out
    assert not any((folder / "__init__.py").exists() for folder in (out, *out.parents) if repo in (folder, *folder.parents))


def test_cli_a_bad_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc_info:
        main(["demo", "--metric", "worst"])
    assert exc_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("python -m results: error: argument --metric: invalid choice") and "best" in line


def spread_experiment(root, noise=(0.4,)) -> Experiment:
    """SAM and GSAM on digits with label noise; two seeds far apart near 0 % and near 100 %."""
    cells = []
    for rate in noise:
        for optimizer in ("sam", "gsam"):
            for seed, curve in enumerate(([1.0, 60.0, 99.9], [30.0, 80.0, 90.0])):
                cfg = TrainConfig("digits", optimizer=optimizer, seed=seed, label_noise=rate, experiment="d",
                                  runs_dir=str(root))
                write_done(cfg, curve[-1], curve=curve)
                cells.append(cfg)
    return Experiment("d", "Digits with 40% label noise", tuple(cells), columns=("label_noise",))


def test_curves_bands_stay_within_0_and_100_and_the_legend_names_them(tmp_path):
    fig = plot_curves(collect(spread_experiment(tmp_path), runs_dir=tmp_path, slurm_jobs=NO_SLURM))
    [ax] = fig.axes
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    for band in bands:
        ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
        assert ys.min() == 0.0 and ys.max() == 100.0  # mean ± std reaches -5.4 and 101.9 here
    [legend] = fig.legends
    assert [text.get_text() for text in legend.get_texts()] == ["sam (n=2)", "gsam (n=2)",
                                                                "shaded: ±1 std over seeds"]
    # Under the axes, never on the curves: the bands leave no empty corner for it.
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).y1 < ax.get_window_extent(renderer).y0


def test_curves_read_as_a_paper_figure(tmp_path):
    fig = plot_curves(collect(spread_experiment(tmp_path), runs_dir=tmp_path, slurm_jobs=NO_SLURM))
    [ax] = fig.axes
    assert ax.get_title() == "label noise 40%"
    assert fig.get_suptitle() == "Digits with 40% label noise"  # no second, contradicting title
    sam, gsam = ax.lines
    dashes = [line._unscaled_dash_pattern for line in (sam, gsam)]  # get_linestyle() says "--" for any dashes
    assert dashes[0] != dashes[1], "SAM and GSAM often coincide: colour alone hides one"
    assert all(band.get_alpha() <= 0.15 for band in ax.collections)  # overlapping bands stay light


def test_panels_with_the_same_legend_share_one_under_them(tmp_path):
    experiment = spread_experiment(tmp_path, noise=(0.2, 0.4, 0.6, 0.8))
    fig = plot_curves(collect(experiment, runs_dir=tmp_path, slurm_jobs=NO_SLURM))
    assert [ax.get_title() for ax in fig.axes] == ["label noise 20%", "label noise 40%", "label noise 60%",
                                                   "label noise 80%"]
    assert len({ax.get_position().x0 for ax in fig.axes}) == 2  # four panels as 2x2
    assert all(ax.get_legend() is None for ax in fig.axes)
    [legend] = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["sam (n=2)", "gsam (n=2)", "shaded: ±1 std over seeds"]
