#!/usr/bin/env bash
# What the benchmarks need beyond frazil itself (run as root on Debian): wrk and hyperfine
# from Debian, and the `bench` extra (functions-framework, py-spy, granian) in the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
missing=()
for tool in wrk hyperfine; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[bench]'
echo "bench setup: ready (wrk, hyperfine, functions-framework, py-spy, granian)"
