"""`make gpu-check` on a machine without a GPU: it says so and exits 0; its dry run
executes every check's code on the CPU (so a typo or a misused API surfaces here,
not in the first, short, GPU session), and its comparisons do detect a difference."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from benchmarks import gpu_check
from bench_fixtures import REPO

# Both tests hide any GPU (rather than skip on a machine that has one): CI allows
# skips only for tests that need a GPU.


def test_without_a_gpu_it_says_so_and_exits_0(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "needs a CUDA GPU" in out and "--dry-run" in out
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written


def test_make_gpu_check_without_a_gpu_exits_0():
    # -o: never (re)install the venv from a test, even if the requirements look newer.
    done = subprocess.run(["make", "-s", "-o", ".venv/.installed", "gpu-check"], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "needs a CUDA GPU" in done.stdout


def test_an_unknown_check_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--only", "twins,warp-speed"])
    assert exit_.value.code == 2
    assert "unknown checks warp-speed; valid: cuda-tests, twins" in capsys.readouterr().err


def test_the_comparisons_see_a_difference_beyond_the_tolerance():
    ref = {"param w": torch.tensor([10.0, -3.0]), "buffer m": torch.tensor([0.5])}
    near = {"param w": torch.tensor([10.0 + 5e-3, -3.0]), "buffer m": torch.tensor([0.5])}
    far = {"param w": torch.tensor([10.0, -3.0]), "buffer m": torch.tensor([0.5 + 2e-3])}
    diff, where = gpu_check.worst_difference(near, ref)
    assert where == "param w" and diff == pytest.approx(5e-4, rel=1e-3)  # 5e-3 / max|w| = 10
    diff, where = gpu_check.worst_difference(far, ref)
    assert where == "buffer m" and diff > gpu_check.TOLERANCE["fp32"]
    nan = {"param w": torch.tensor([float("nan"), -3.0]), "buffer m": torch.tensor([0.5])}
    assert gpu_check.worst_difference(nan, ref)[1] == "param w"


@pytest.mark.slow
def test_the_dry_run_executes_every_check(tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--budget-s", "3000", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    [report_file] = tmp_path.glob("gpu-check-dry-*.json")
    report = json.loads(report_file.read_text())
    assert report["dry_run"] and report["counts"]["FAIL"] == 0 and report["counts"]["SKIP"] == 0
    names = [r["name"] for r in report["results"]]
    expected = {"cuda-tests", "adamw", "resume-layout sgd", "resume-layout adamw",
                "failed-capture host-read", "failed-capture bn-momentum-none",
                "failed-capture rejected", "sync-debug", "kernels vasso step",
                "kernels batchnorm save", "kernels device-cifar", "sigterm-resume", "bench",
                *(f"twin {m} {p}" for m in gpu_check.METHODS for p in ("fp32", "bf16"))}
    assert set(names) == expected and len(names) == len(expected)
    assert {r["status"] for r in report["results"]} <= {"DRY-OK", "INFO"}
    for name in names:
        assert f" {name} " in out  # one printed line per check
    markdown = report_file.with_suffix(".md").read_text()
    assert "| sigterm-resume | DRY-OK |" in markdown
    # The engine run was stopped mid-epoch and resumed, counting its steps right.
    sigterm = next(r for r in report["results"] if r["name"] == "sigterm-resume")["data"]
    assert sigterm["stopped"]["finished"] is False and sigterm["resumed"]["finished"] is True
    assert sigterm["stopped"]["ckpt_steps"] == sigterm["stopped"]["pos_step"] == 2
