#!/usr/bin/env bash
# Install headless Chromium and poppler-utils (Debian's chromium and poppler-utils,
# about a minute) so that the report's tests run instead of skipping: the browser
# test loads outputs/report/report.html, and pdftotext reads the numbers back from
# report.pdf. Needs root; CI calls it.
set -euo pipefail
if command -v chromium >/dev/null && command -v pdftotext >/dev/null; then
    echo "install-browser: chromium and pdftotext present"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "install-browser: error: must run as root (apt-get)" >&2; exit 1; }
packages=(chromium poppler-utils)
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
}
echo "install-browser: $(chromium --version 2>/dev/null | head -n 1); $(pdftotext -v 2>&1 | head -n 1)"
