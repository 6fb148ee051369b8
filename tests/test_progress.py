"""What a run prints off a terminal (a Slurm log, a pipe): where it writes, then one line per epoch."""

from __future__ import annotations

import re

from bench_fixtures import cli


def test_off_a_tty_a_run_prints_its_directory_then_one_line_per_epoch(tmp_path):
    # 3 epochs of 21 steps: the old display printed 10 step lines per epoch besides the summary.
    proc = cli(["digits", "--epochs", "3", "--batch-size", "64", "--runs-dir", str(tmp_path), "--device", "cpu"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    lines = out.splitlines()
    [where] = [line for line in lines if line.startswith("run directory: ")]
    assert where.startswith(f"run directory: {tmp_path / 'adhoc'}/") and lines.index(where) == 0, out
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 3, out
    for number, line in enumerate(epochs, start=1):
        assert re.match(rf"epoch {number}/3: train loss \d+\.\d{{4}} acc \d+\.\d\d, test loss \d+\.\d{{4}} acc \d+\.\d\d \(", line), line
    assert len(lines) == 4, out
