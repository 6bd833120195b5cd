#!/usr/bin/env bash
# The main job for a newcomer: install, start `frazil server` on the embedded default,
# deploy examples/hello, invoke it, show the envelope, and stop the server again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

PORT=${FRAZIL_DEMO_PORT:-8080}
export FRAZIL_URL="http://127.0.0.1:$PORT"
.venv/bin/frazil server --port "$PORT" --data-dir .frazil --log-level warning &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 150); do
    curl -sf "$FRAZIL_URL/healthz" >/dev/null 2>&1 && break
    kill -0 $SERVER 2>/dev/null || { echo "demo: frazil server did not start" >&2; exit 1; }
    sleep 0.1
done
.venv/bin/frazil deploy examples/hello
.venv/bin/frazil invoke hello --data '{"name": "newcomer"}'
.venv/bin/frazil invoke hello --data '{"name": "again (warm)"}'
echo
echo "demo: done. Run the server yourself with: .venv/bin/frazil server"
