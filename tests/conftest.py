"""Shared pytest set-up.

Tests run on a 2-core CPU next to other work: one intra-op thread keeps them
predictable. Tests that need the real single-node Slurm cluster take the
``slurm_cluster`` fixture: it skips, naming ``make slurm-up``, when no cluster
answers. Tests that submit jobs and wait for them also take ``slurm_node_free``:
on a node busy with other jobs theirs would only queue, so it skips, saying how
busy the node is, instead of letting them time out. CI always brings its own,
idle cluster up first (``.ci/run``) and sets ``VASSO_REQUIRE_SLURM=1``, so that
there a missing or busy cluster fails instead of skipping. The LaTeX test likewise
takes the ``pdflatex`` fixture (``VASSO_REQUIRE_LATEX=1`` in CI), the report's browser test
the ``chromium`` fixture (``VASSO_REQUIRE_BROWSER=1``). The only tests CI
may skip are those that need a CUDA device; their skip reason starts with "needs a
CUDA device" (``.ci/run`` checks it).

The tiny CIFAR fixtures (tests/bench_fixtures.py) are in the real format but cannot
match the official md5 checksums, so the whole session opts out of the data check with
its one switch, ``VASSO_SKIP_DATA_CHECKSUMS=1`` (runs record it in meta.json); the
tests of the check itself (tests/test_data_integrity.py) turn it back on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import torch

torch.set_num_threads(1)
os.environ["VASSO_SKIP_DATA_CHECKSUMS"] = "1"  # see the module docstring
os.environ["VASSO_TENSORBOARD"] = "0"  # no event files from the tests' runs (benchmarks.monitor), Slurm jobs too


def _slurm_node_state() -> str | None:
    """The state `sinfo` reports for the node, or None when no cluster answers."""
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return None
    states = out.stdout.split()
    return states[0] if out.returncode == 0 and states else None


def skip_or_fail(message: str, switch: str = "VASSO_REQUIRE_SLURM") -> None:
    """Skip; but fail where the environment variable ``switch`` is 1 (CI)."""
    if os.environ.get(switch) == "1":
        pytest.fail(f"{message} ({switch}=1: this test must run here)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """A live Slurm cluster (started by `make slurm-up`); returns the node state."""
    state = _slurm_node_state()
    if state is None or state.rstrip("*~#") in {"down", "drained", "fail"}:
        skip_or_fail(f"no usable Slurm cluster (sinfo says {state!r}): run `make slurm-up` "
                      "to start a single-node cluster")
    return state


def slurm_node_busy(ours: set[str] = frozenset()) -> str | None:
    """Why the cluster's node cannot take a test's jobs now, or None when it can.

    Busy: a job that is not one of `ours` (squeue job ids) is running or waiting
    there: the test's jobs would share the CPUs or queue behind it, and its waits
    would time out.
    """
    def lines(cmd: list[str]) -> list[str]:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return [line for line in out.stdout.split("\n") if line.strip()] if out.returncode == 0 else []

    queue = [row.split("|") for row in lines(["squeue", "-h", "-o", "%i|%T|%u|%j"])]
    others = [job for job in queue if job[0] not in ours]
    if not others:
        return None
    idle = total = 0
    for row in lines(["sinfo", "-h", "-N", "-o", "%C"]):  # allocated/idle/other/total
        _, i, _, t = (int(x) for x in row.strip().split("/"))
        idle, total = idle + i, total + t
    shown = "; ".join(f"{i} {state.lower()} ({name}, {user})" for i, state, user, name in others[:3])
    more = f" and {len(others) - 3} more" if len(others) > 3 else ""
    return (f"the Slurm node is busy with other jobs: {idle} of {total} CPUs idle; squeue: {shown}{more}. "
            "This test's jobs would share it or queue and time out; run it on a free node")


@pytest.fixture
def slurm_node_free(slurm_cluster) -> None:
    """No one else's job is on the node now; else skip (fail under VASSO_REQUIRE_SLURM=1),
    saying why. Jobs of an earlier test may still be ending: they get a short grace period."""
    deadline = time.monotonic() + 30
    while (reason := slurm_node_busy()) is not None and time.monotonic() < deadline:
        time.sleep(2)
    if reason is not None:
        skip_or_fail(reason)


@pytest.fixture(scope="session")
def pdflatex() -> str:
    """The pdflatex executable (``bash scripts/install-latex.sh`` installs it)."""
    path = shutil.which("pdflatex")
    if path is None:
        skip_or_fail("pdflatex not installed (bash scripts/install-latex.sh); the LaTeX "
                     "structure is tested without it", "VASSO_REQUIRE_LATEX")
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium and pdftotext (``bash scripts/install-browser.sh`` installs both)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None or shutil.which("pdftotext") is None:
        skip_or_fail("chromium or pdftotext not installed (bash scripts/install-browser.sh); the "
                     "report's HTML and LaTeX are tested without them", "VASSO_REQUIRE_BROWSER")
    return path
