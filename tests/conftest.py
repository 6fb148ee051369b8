"""Shared pytest set-up.

Tests run on a 2-core CPU next to other work: one intra-op thread keeps them
predictable. Tests that need the real single-node Slurm cluster take the
``slurm_cluster`` fixture: it skips, naming ``make slurm-up``, when no cluster
answers. CI always brings the cluster up first (``.ci/run``), and sets
``VASSO_REQUIRE_SLURM=1`` so that a missing cluster fails there instead of skipping.
The LaTeX test likewise takes the ``pdflatex`` fixture (``VASSO_REQUIRE_LATEX=1``
in CI). The only tests CI may skip are those that need a CUDA device; their skip
reason starts with "needs a CUDA device" (``.ci/run`` checks it).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

torch.set_num_threads(1)


def _unavailable(message: str, switch: str) -> None:
    """Skip, or fail where the environment variable ``switch`` is 1 (CI)."""
    if os.environ.get(switch) == "1":
        pytest.fail(f"{message} ({switch}=1)")
    pytest.skip(message)


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


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """A live Slurm cluster (started by `make slurm-up`); returns the node state."""
    state = _slurm_node_state()
    if state is None or state.rstrip("*~#") in {"down", "drained", "fail"}:
        message = (
            f"no usable Slurm cluster (sinfo says {state!r}): run `make slurm-up` "
            "to start a single-node cluster"
        )
        _unavailable(message, "VASSO_REQUIRE_SLURM")
    return state


@pytest.fixture(scope="session")
def pdflatex() -> str:
    """The pdflatex executable (``bash scripts/install-latex.sh`` installs it)."""
    path = shutil.which("pdflatex")
    if path is None:
        _unavailable("pdflatex not installed (bash scripts/install-latex.sh); the LaTeX "
                     "structure is tested without it", "VASSO_REQUIRE_LATEX")
    return path
