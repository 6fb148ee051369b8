#!/usr/bin/env bash
# Create the virtual environment, install the suite's pinned dependencies and the
# optimizer library `vasso` itself (editable, so that `import vasso` works anywhere).
# Called by `make install`; safe to run again (pip skips what is installed).
#   PYTHON  the interpreter to build the venv from (default: python3), 3.10 or newer
#   VENV    where the venv goes (default: .venv)
set -euo pipefail

python=${PYTHON:-python3}
venv=${VENV:-.venv}

die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

command -v "$python" >/dev/null \
    || die "no '$python' on PATH: install Python 3.10 or newer, or pass PYTHON=/path/to/python3"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$("$python" --version 2>&1) is too old: the suite needs Python 3.10 or newer (pass PYTHON=...)"
"$python" -c 'import venv, ensurepip' 2>/dev/null \
    || die "'$python' lacks venv/ensurepip: install your distribution's python3-venv package"

if [ ! -x "$venv/bin/python" ]; then
    echo "install: creating $venv with $("$python" --version)"
    "$python" -m venv "$venv"
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check)
# Exactly the tested set: requirements.txt names what we need, the lock pins it.
if ! "${pip[@]}" install -q -r requirements.txt -c requirements-lock.txt; then
    die "pip could not install the requirements: is the package index reachable (network, proxy, PIP_INDEX_URL)? See the pip output above."
fi
"$venv/bin/python" -c 'import torch, torchvision, sklearn, submitit, pandas, matplotlib' \
    || die "the packages installed but do not import; see the error above"
# The optimizer library itself, editable: `import vasso` works from this venv in any
# directory. Only `vasso` is exposed; the suite (benchmarks, slurm, results) runs from
# the repository. --no-build-isolation: the build uses the pinned setuptools above.
"${pip[@]}" install -q --no-deps --no-build-isolation -e . \
    || die "pip could not install the vasso package itself (editable); see the pip output above"
venv_python="$(cd "$venv" && pwd)/bin/python"
(cd / && "$venv_python" -c 'import vasso') \
    || die "vasso installed but does not import outside the repository; see the error above"
echo "install: $venv ready ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
