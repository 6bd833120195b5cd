#!/usr/bin/env bash
# Installs what frazil and its functions need on a fresh Debian machine (run as root):
# Debian packages (ImageMagick, Ghostscript, fonts incl. CJK, Node.js check), then a venv
# in .venv with frazil installed. `scripts/setup.sh test` also installs test dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(imagemagick ghostscript fontconfig fonts-dejavu-core fonts-liberation fonts-wqy-zenhei)
# The tests also drive the web console in a real browser, and the benchmarks' smoke runs load
# a server with wrk.
[ "${1:-}" = "test" ] && DEB_PACKAGES+=(chromium wrk)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v node >/dev/null || { echo "setup: Node.js 20 is needed for the nodejs20 runtime" >&2; exit 1; }

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "setup: frazil needs Python 3.11 (found $PYTHON)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip
if [ "${1:-}" = "test" ]; then
    # playwright drives the Debian chromium; it must never download a browser of its own.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
else
    .venv/bin/pip install -q --disable-pip-version-check -e .
fi
echo "setup: ready (.venv/bin/frazil)"
