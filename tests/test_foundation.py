"""The ground the suite stands on: the install step and the real Slurm cluster."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_install_is_up_to_date_after_make_install():
    """`make install` ran before the tests; a second one has nothing to do."""
    out = subprocess.run(["make", "-q", "install"], cwd=REPO)
    assert out.returncode == 0, "make install would rebuild .venv although nothing changed"


def test_install_refuses_an_old_python(tmp_path):
    fake = tmp_path / "python3"
    # Answers like Python 3.8 does: `-c` code sees an old version_info.
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Python 3.8.10'; exit 0; fi\nexit 1\n")
    fake.chmod(0o755)
    out = subprocess.run(
        ["bash", "scripts/install.sh"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "VENV": str(tmp_path / "venv")},
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "Python 3.8.10 is too old" in out.stderr and "3.10 or newer" in out.stderr
    assert not (tmp_path / "venv").exists()


def test_install_names_a_missing_interpreter(tmp_path):
    out = subprocess.run(
        ["bash", "scripts/install.sh"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHON": "python-that-does-not-exist"},
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "no 'python-that-does-not-exist' on PATH" in out.stderr


def _job_state(job_id: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    return out.split("JobState=", 1)[1].split()[0]


@pytest.mark.slurm
def test_sbatch_job_runs_through_slurmctld_and_slurmd(slurm_node_free, tmp_path):
    marker = tmp_path / "ran-on"
    out = subprocess.run(
        ["sbatch", "--parsable", "--job-name=vasso-smoke", f"--output={tmp_path}/%j.out",
         f"--wrap=echo $SLURM_JOB_ID $SLURMD_NODENAME > {marker}"],
        capture_output=True, text=True, check=True,
    )
    job_id = out.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 60
    state = _job_state(job_id)
    while state in {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING"} and time.monotonic() < deadline:
        time.sleep(0.5)
        state = _job_state(job_id)
    assert state == "COMPLETED", f"job {job_id} ended {state}"
    # The job itself wrote its id and the node slurmd runs as: it went through slurmd.
    ran_id, node = marker.read_text().split()
    assert ran_id == job_id
    node_names = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert node in node_names
