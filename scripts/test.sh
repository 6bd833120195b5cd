#!/usr/bin/env bash
# Installs everything the tests need and runs the whole suite (root is needed for the sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 "$@"
