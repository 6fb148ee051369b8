"""`make report` (results/report.py): one PDF and one web page from run-directory fixtures.

Two experiments with numbers, one complete (`cifar10`, the paper's values beside ours)
and one partial (`label-noise`: one cell done, one failed, one stopped, one never
launched), and one not yet run (`theta`). One cifar10 run was resumed by another commit
of the suite. The numbers are read back from the HTML and, through pdftotext, from the
PDF; the page is loaded in headless Chromium (tests/headless_browser.py).
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest

import headless_browser
from benchmarks import experiments as experiments_module
from benchmarks.config import run_dir
from benchmarks.experiments import Experiment
from results import report
from test_results_fixtures import cifar_cell, write_done, write_failed, write_stopped

COMMIT, OTHER_COMMIT = "a" * 40, "b" * 40
FINALS = {"sgd": (96.25, 96.75), "sam": (96.5, 97.0), "vasso": (97.0, 97.5)}  # exact in binary
# The table's cells as they must read: mean ± sample std (n). std of two values d apart: d / sqrt 2.
EXPECTED = {"sgd": "96.50 ± 0.35 (2)", "sam": "96.75 ± 0.35 (2)", "vasso": "97.25 ± 0.35 (2)"}


def write_meta(path: Path, *commits: str, host: str = "node7", device: str = "NVIDIA H100 80GB HBM3") -> None:
    """meta.json as the engine writes it, one start per commit."""
    starts = [{"time": "2026-11-30T10:00:00Z", "host": host, "device": device, "git_commit": commit,
               "pid": 1234, "slurm_job_id": "77_0", "slurm_restart_count": None} for commit in commits]
    meta = {"versions": {"python": "3.11.7", "torch": "2.14.1+cu128", "cuda": "12.8"}, "git_commit": commits[-1],
            "host": host, "device": device, "started": starts[0]["time"], "slurm_job_ids": ["77_0"],
            "starts": starts}
    (path / "meta.json").write_text(json.dumps(meta))


def fixture_experiments(root: Path) -> list[Experiment]:
    complete = []
    for optimizer, finals in FINALS.items():
        for seed, final in enumerate(finals):
            cfg = cifar_cell(root, "cifar10", "resnet18", optimizer, seed)
            complete.append(cfg)
            path = write_done(cfg, final, best=final + 0.5)
            resumed = optimizer == "vasso" and seed == 1  # resumed by another commit
            write_meta(path, *((COMMIT, OTHER_COMMIT) if resumed else (COMMIT,)))
    partial = [cifar_cell(root, "label-noise", "resnet18", optimizer, 0, label_noise=noise)
               for noise in (0.25, 0.5) for optimizer in ("sgd", "vasso")]
    write_meta(write_done(partial[0], 80.25), COMMIT, host="node8", device="cpu")
    write_failed(partial[1], "CUDA out of memory")
    write_stopped(partial[2])  # partial[3]: never launched
    never = [cifar_cell(root, "theta", "resnet18", "vasso", 0, theta=0.4)]
    return [
        Experiment("cifar10", "Table 1: CIFAR-10 test accuracy", tuple(complete), figure="curves",
                   reproduces="The paper's Table 1."),
        Experiment("label-noise", "Label noise", tuple(partial), columns=("label_noise",),
                   reproduces="The paper's label-noise experiment."),
        Experiment("theta", "Theta", tuple(never), columns=("theta",), reproduces="The theta sweep."),
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The report of the fixtures, built once: (report, its folder, the runs root, the experiments)."""
    root = tmp_path_factory.mktemp("runs")
    experiments = fixture_experiments(root)
    folder = tmp_path_factory.mktemp("out") / "report"
    built_report = report.build(experiments, root, folder, options=f" --runs-dir {root}")
    written, problem = report.write(built_report, folder)
    return built_report, folder, root, experiments, problem


def text_of(page: str) -> str:
    """The page's visible text, tags dropped, entities decoded, whitespace collapsed."""
    body = re.sub(r'src="data:[^"]*"', "", page)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def pdf_text(pdf: Path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())


def expected_content(root: Path, experiments: list[Experiment]) -> list[str]:
    """What both renderings must say: the numbers, the paper's values, the missing cells and
    their commands, the provenance, the mark of the other commit's run."""
    cifar, noise, _ = experiments
    resumed = next(c for c in cifar.cells if c.optimizer == "vasso" and c.seed == 1)
    return [
        *EXPECTED.values(), "≈96.25", "≈96.58", "≈96.77",  # ours beside the paper's (paper.csv)
        "80.25 (1)",  # label-noise: the one cell done
        "1 of 4 cells done, 1 stopped, 1 failed, 1 not launched",
        f"python -m slurm launch label-noise --runs-dir {root}", "starts the 1 not launched and 1 stopped cells",
        f"python -m slurm retry label-noise --runs-dir {root}", "reruns the 1 failed cell",
        "CUDA out of memory", "seed 0: not launched — ", run_dir(noise.cells[3]).name,  # its directory
        "Not yet run: 0 of 1 cells done, 1 not launched",
        f"python -m slurm launch theta --runs-dir {root}",
        # provenance
        "aaaaaaaaaa", "bbbbbbbbbb (other commit)", "3.11.7", "2.14.1+cu128", "12.8", "NVIDIA H100 80GB HBM3", "node7", "node8",
        f"cifar10/{run_dir(resumed).name}", "weight decay",  # a recipe setting that differs from the official code
        "1 of 6 finished runs were made (or resumed) by another commit",
    ]


def test_the_page_holds_the_numbers_missing_cells_commands_and_provenance(built):
    built_report, folder, root, experiments, _ = built
    text = text_of((folder / "report.html").read_text(encoding="utf-8"))
    for expected in expected_content(root, experiments):
        assert expected in text, expected
    # Each number's line in the provenance: seed 0 of SGD, from its own run directory.
    sgd0 = next(c for c in experiments[0].cells if c.optimizer == "sgd" and c.seed == 0)
    assert f"96.25 96.75 aaaaaaaaaa node7 NVIDIA H100 80GB HBM3 cifar10/{run_dir(sgd0).name}" in text
    assert built_report.commit == COMMIT
    # The label-noise run comes from the reference commit: no mark in its section.
    noise = text[text.index("Provenance: Label noise"):]
    assert "other commit" not in noise and "80.25" in noise


def test_the_pdf_holds_the_same(built, pdflatex, chromium):
    _, folder, root, experiments, problem = built
    assert problem is None, problem
    text = pdf_text(folder / "report.pdf")
    for expected in expected_content(root, experiments):
        assert expected.replace("_", " ") in text, expected  # an underscore prints as a rule
    order = [text.index(title) for title in ("1 Table 1: CIFAR-10", "2 Label noise", "3 Theta", "A Provenance")]
    assert order == sorted(order), "sections in the experiments' order, the provenance last"


def test_the_page_loads_in_a_browser_without_errors_and_shows_every_table(built, chromium, tmp_path):
    _, folder, *_ = built
    page_source = (folder / "report.html").read_text(encoding="utf-8")
    probe = """[...document.querySelectorAll('table')].map(t => {
        const box = t.getBoundingClientRect();
        return {cls: t.className, rows: t.rows.length, shown: box.width > 0 && box.height > 0
                && getComputedStyle(t).visibility === 'visible'}; })"""
    page = headless_browser.load(folder / "report.html", probe, chromium)
    (tmp_path / "report.png").write_bytes(page.screenshot)
    assert page.errors == []
    tables = page.probe
    # Results, environment and sources for each of the two experiments with numbers.
    assert len(tables) == page_source.count("<table") == 6
    assert all(t["shown"] for t in tables), tables
    assert [t["rows"] for t in tables if t["cls"] == "results"] == [4, 3]  # header + methods
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 20_000


def test_the_browser_check_sees_console_errors_and_failed_loads(tmp_path, chromium):
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>x</title></head><body>'
                      '<img src="missing.png"><script>console.error("boom")</script></body></html>')
    errors = headless_browser.load(broken, "null", chromium).errors
    assert any("boom" in e for e in errors) and any("missing.png" in e for e in errors), errors


def test_the_page_fetches_nothing(built):
    _, folder, *_ = built
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page
    sources = re.findall(r'(?:src|href)="([^"#]*)"', page)
    assert sources and all(s.startswith("data:") for s in sources), sources  # figures embedded, no link out


def test_cli_writes_both_and_names_them(tmp_path, monkeypatch, capsys, pdflatex):
    root = tmp_path / "runs"
    experiments = fixture_experiments(root)
    monkeypatch.setattr(experiments_module, "load", lambda module=None: {e.name: e for e in experiments})
    assert report.main(["--runs-dir", str(root), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    for name in ("report.html", "report.tex", "report.pdf"):
        assert f"wrote {tmp_path / 'out' / 'report' / name}" in out


def test_cli_without_pdflatex_writes_the_page_and_fails_naming_the_fix(tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    experiments = fixture_experiments(root)
    monkeypatch.setattr(experiments_module, "load", lambda module=None: {e.name: e for e in experiments})
    monkeypatch.setattr(report.shutil, "which", lambda name: None)
    assert report.main(["--runs-dir", str(root), "--out", str(tmp_path / "out")]) == 1
    assert "scripts/install-latex.sh" in capsys.readouterr().err
    assert (tmp_path / "out" / "report" / "report.html").is_file()


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert report.main(["--runs-dir", str(tmp_path / "absent"), "--out", str(tmp_path)]) == 2
    assert "does not exist; pass --runs-dir" in capsys.readouterr().err
    assert report.main(["--runs-dir", str(tmp_path), "--only", "nonesuch"]) == 2
    assert "unknown experiment 'nonesuch'" in capsys.readouterr().err


def test_every_state_not_done_has_the_command_that_completes_it():
    from types import SimpleNamespace

    states = ["done", "not launched", "not launched", "stopped", "failed", "invalid", "running", "pending"]
    grid = SimpleNamespace(name="cifar10", runs=[SimpleNamespace(state=s) for s in states])
    assert report.completing_commands(grid, " --runs-dir /scratch") == [
        ("python -m slurm launch cifar10 --runs-dir /scratch",
         "starts the 2 not launched and 1 stopped cells (a stopped one resumes from its checkpoint)"),
        ("python -m slurm retry cifar10 --runs-dir /scratch", "reruns the 1 failed cell"),
        ("python -m slurm repair cifar10 --runs-dir /scratch",
         "moves the damaged files of the 1 invalid cell aside; launch then reruns them"),
        ("python -m slurm status cifar10 --runs-dir /scratch",
         "follows the 1 running and 1 pending cells; `make report` again renders them once done"),
    ]
    assert report.completing_commands(SimpleNamespace(name="x", runs=grid.runs[:1]), "") == []
    assert report.state_summary(grid) == ("1 of 8 cells done, 1 running, 1 pending, 1 stopped, 1 failed, "
                                          "1 invalid, 2 not launched")


def test_provenance_of_a_run_the_engine_made(tmp_path):
    """Not a fixture: meta.json as the engine writes it today."""
    import platform
    import socket

    import torch

    from benchmarks.config import TrainConfig
    from benchmarks.engine import train
    from benchmarks.rundir import git_commit

    cfg = TrainConfig("digits", max_steps=2, batch_size=32, optimizer="sam", progress="none",
                      experiment="tiny", runs_dir=str(tmp_path))
    train(cfg)
    experiment = Experiment("tiny", "A tiny run", (cfg,), columns=("label_noise",))
    built_report = report.build([experiment], tmp_path, tmp_path / "report")
    text = text_of(report.html_page(built_report))
    commit = git_commit()  # None outside a git checkout
    assert (f"commit of the suite {report.short(commit)} (1 run)" if commit else "commit of the suite unknown") in text
    for expected in (f"python {platform.python_version()} (1 run)", f"torch {torch.__version__} (1 run)",
                     "devices cpu (1 run)", f"hosts {socket.gethostname()} (1 run)", f"tiny/{run_dir(cfg).name}"):
        assert expected in text, expected
    assert "other commit" not in text
