"""`pip install .` installs the optimizer library `vasso` alone (torch its only
dependency); the suite's packages stay in the repository (ARCHITECTURE.md,
Packaging). `make install` exposes `vasso` from the venv the same way, editable.

The install goes into a temporary --target from a copy of the files a build
reads, offline (--no-index, the venv's setuptools): nothing is installed into
the shared venv and the worktree is not written to.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("setuptools", reason="building the package needs setuptools (requirements.txt)")


def build_inputs(tmp: Path) -> Path:
    """A copy of what a build reads, the suite's folders included: the build must leave them out."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("vasso", "benchmarks", "slurm", "results"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    return source


def pip_install(*args: str, cwd: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--disable-pip-version-check", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def python_in(tmp_path: Path, code: str, site_dir: Path) -> subprocess.CompletedProcess:
    """Run `code` in `tmp_path` (outside the repository) with `site_dir` as a site directory."""
    setup = f"import site; site.addsitedir({str(site_dir)!r}); "
    return subprocess.run([sys.executable, "-c", setup + code], cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install --no-deps --target TARGET .`, offline."""
    tmp = tmp_path_factory.mktemp("pkg")
    source = build_inputs(tmp)
    target = tmp / "target"
    pip_install("--no-deps", "--no-build-isolation", "--quiet", "--target", str(target), ".", cwd=source)
    return target


def test_pip_install_gives_vasso_alone(installed):
    top_level = sorted(p.name for p in installed.iterdir() if not p.name.endswith(".dist-info"))
    assert top_level == ["vasso"], f"the wheel installs {top_level}: only `vasso` may be a top-level package"
    (dist_info,) = installed.glob("vasso-*.dist-info")
    requires = [line for line in (dist_info / "METADATA").read_text().splitlines()
                if line.startswith("Requires-Dist:")]
    assert [r.split(":", 1)[1].split(">")[0].strip() for r in requires] == ["torch"], requires


def test_installed_vasso_imports_from_outside_the_repository(installed, tmp_path):
    code = ("import sys, vasso, torch; "
            "assert vasso.__file__.startswith(sys.argv[1]), vasso.__file__; "
            "p = torch.nn.Parameter(torch.ones(2)); "
            "opt = vasso.VaSSO(torch.optim.SGD([p], lr=0.1), rho=0.05, theta=0.4); "
            "print(type(opt).__name__)")
    run = subprocess.run([sys.executable, "-c", code, str(installed)], cwd=tmp_path,
                         env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "VaSSO", run.stdout + run.stderr


def test_make_install_exposes_vasso_and_nothing_else(tmp_path):
    """scripts/install.sh's editable install of the project exposes `vasso` anywhere, the suite nowhere."""
    command = "install -q --no-deps --no-build-isolation -e ."
    assert command in (ROOT / "scripts" / "install.sh").read_text(), "install.sh no longer installs vasso"
    source = build_inputs(tmp_path)
    prefix = tmp_path / "prefix"
    pip_install(*command.split()[1:], "--prefix", str(prefix), cwd=source)
    (site_dir,) = prefix.glob("lib/python*/site-packages")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    code = ("import importlib.util as u, vasso; print(vasso.__file__); "
            "print([m for m in ('benchmarks', 'slurm', 'results') if u.find_spec(m)])")
    run = python_in(outside, code, site_dir)
    assert run.returncode == 0, run.stderr
    where, exposed = run.stdout.splitlines()
    assert where == str(source / "vasso" / "__init__.py")  # editable: the repository's own files
    assert exposed == "[]", f"the editable install exposes {exposed}"
