#!/usr/bin/env bash
# Install pdflatex with booktabs (Debian's texlive-latex-base and
# texlive-latex-recommended, about 45 s) so that the test that compiles the
# generated LaTeX tables runs instead of skipping. Needs root; CI calls it.
set -euo pipefail
if command -v pdflatex >/dev/null && kpsewhich booktabs.sty >/dev/null 2>&1; then
    echo "install-latex: pdflatex and booktabs present"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "install-latex: error: must run as root (apt-get)" >&2; exit 1; }
packages=(texlive-latex-base texlive-latex-recommended)
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
}
echo "install-latex: $(pdflatex --version | head -n 1)"
