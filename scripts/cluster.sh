#!/usr/bin/env bash
# A local cluster on this machine's PostgreSQL and NATS: two gateways and three invokers,
# each its own process, port and data dir under .frazil-cluster/ (cluster mode is a work in
# progress: see the README's "Cluster mode" section for what works yet).
#
#   scripts/cluster.sh start    create the database if needed, start the five nodes, wait until
#                               every one answers /healthz and the first gateway lists them all
#   scripts/cluster.sh status   each node's process, then GET /v1/cluster from the first gateway
#   scripts/cluster.sh try      deploy a small function through the first gateway and invoke it
#                               twice through the second: cold, then warm, with the invoker's id
#   scripts/cluster.sh stop     SIGTERM every node (each deregisters) and wait for it to exit
#   scripts/cluster.sh clean    stop, then drop the database, delete the cluster's NATS buckets
#                               and remove .frazil-cluster/
#
# Settings (environment): FRAZIL_CLUSTER (default frazil_sh), CLUSTER_DB (default
# frazil_cluster_sh), PGURL_BASE (default postgresql+asyncpg://postgres@127.0.0.1:5432),
# FRAZIL_NATS_URL (default nats://127.0.0.1:4222), CLUSTER_PORT (first port, default 8180:
# gateways on 8180-8181, invokers on 8190-8192).
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=.frazil-cluster
export FRAZIL_CLUSTER=${FRAZIL_CLUSTER:-frazil_sh}
export FRAZIL_NATS_URL=${FRAZIL_NATS_URL:-nats://127.0.0.1:4222}
CLUSTER_DB=${CLUSTER_DB:-frazil_cluster_sh}
PGURL_BASE=${PGURL_BASE:-postgresql+asyncpg://postgres@127.0.0.1:5432}
export FRAZIL_DATABASE_URL="$PGURL_BASE/$CLUSTER_DB"
PORT=${CLUSTER_PORT:-8180}
FRAZIL=.venv/bin/frazil
PY=.venv/bin/python
# name role port
NODES=("gateway-1 gateway $PORT" "gateway-2 gateway $((PORT + 1))"
       "invoker-1 invoker $((PORT + 10))" "invoker-2 invoker $((PORT + 11))" "invoker-3 invoker $((PORT + 12))")

admin_key() {
    # One key for every node (cluster mode demands it), made at the first start.
    if [ ! -s "$ROOT/admin.key" ]; then
        mkdir -p "$ROOT" && chmod 700 "$ROOT"
        (umask 077 && $PY -c 'import secrets; print(secrets.token_urlsafe(32))' > "$ROOT/admin.key")
    fi
    cat "$ROOT/admin.key"
}

db() {  # db SQL: run one statement on the maintenance database
    $PY - "$PGURL_BASE" "$1" <<'PY'
import asyncio, sys
import asyncpg
from sqlalchemy.engine import make_url
u = make_url(sys.argv[1] + "/postgres")
async def main():
    conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                                 database=u.database, timeout=5)
    try:
        print(await conn.fetchval(sys.argv[2]) if sys.argv[2].startswith("SELECT") else await conn.execute(sys.argv[2]))
    finally:
        await conn.close()
asyncio.run(main())
PY
}

alive() { [ -f "$ROOT/$1.pid" ] && kill -0 "$(cat "$ROOT/$1.pid")" 2>/dev/null; }

wait_healthy() {  # wait_healthy name port: poll /healthz with a deadline (30 s)
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$2/healthz" >/dev/null 2>&1 && return 0
        alive "$1" || { echo "cluster: $1 exited; the end of $ROOT/$1.log:" >&2; tail -5 "$ROOT/$1.log" >&2; return 1; }
        sleep 0.1
    done
    echo "cluster: $1 did not answer /healthz within 30 s" >&2
    return 1
}

start() {
    export FRAZIL_ADMIN_KEY
    FRAZIL_ADMIN_KEY=$(admin_key)
    if [ "$(db "SELECT count(*) FROM pg_database WHERE datname = '$CLUSTER_DB'")" = "0" ]; then
        db "CREATE DATABASE \"$CLUSTER_DB\"" >/dev/null
        echo "cluster: created database $CLUSTER_DB"
    fi
    for node in "${NODES[@]}"; do
        read -r name role port <<<"$node"
        if alive "$name"; then echo "cluster: $name is already running"; continue; fi
        setsid "$FRAZIL" server --role "$role" --port "$port" --data-dir "$ROOT/$name" --log-level warning \
            >>"$ROOT/$name.log" 2>&1 </dev/null &
        echo $! > "$ROOT/$name.pid"
    done
    for node in "${NODES[@]}"; do
        read -r name role port <<<"$node"
        wait_healthy "$name" "$port"
        echo "cluster: $name ($role) on http://127.0.0.1:$port"
    done
    for _ in $(seq 100); do
        count=$(curl -sf -H "Authorization: Bearer $FRAZIL_ADMIN_KEY" "http://127.0.0.1:$PORT/v1/cluster" \
                | $PY -c 'import json, sys; print(len(json.load(sys.stdin)["nodes"]))' 2>/dev/null || echo 0)
        [ "$count" = "${#NODES[@]}" ] && break
        sleep 0.1
    done
    echo "cluster: $count of ${#NODES[@]} nodes registered in cluster $FRAZIL_CLUSTER"
    echo "cluster: FRAZIL_URL=http://127.0.0.1:$PORT FRAZIL_TOKEN=\$(cat $ROOT/admin.key) .venv/bin/frazil ..."
}

stop() {
    for node in "${NODES[@]}"; do
        read -r name _ _ <<<"$node"
        if alive "$name"; then kill -TERM "$(cat "$ROOT/$name.pid")"; fi
    done
    for node in "${NODES[@]}"; do
        read -r name _ _ <<<"$node"
        for _ in $(seq 200); do alive "$name" || break; sleep 0.1; done
        if alive "$name"; then
            echo "cluster: $name did not stop within 20 s; killing it" >&2
            kill -KILL -- "-$(cat "$ROOT/$name.pid")" 2>/dev/null || true
        fi
        rm -f "$ROOT/$name.pid"
    done
    echo "cluster: stopped"
}

status() {
    for node in "${NODES[@]}"; do
        read -r name role port <<<"$node"
        if alive "$name"; then state="running (pid $(cat "$ROOT/$name.pid"))"; else state="stopped"; fi
        echo "$name  $role  :$port  $state"
    done
    [ -s "$ROOT/admin.key" ] || return 0
    curl -sf -H "Authorization: Bearer $(cat "$ROOT/admin.key")" "http://127.0.0.1:$PORT/v1/cluster" \
        | $PY -m json.tool 2>/dev/null || echo "cluster: the first gateway does not answer"
}

try_it() {
    local key url1 url2 dir
    key=$(cat "$ROOT/admin.key")
    url1="http://127.0.0.1:$PORT"
    url2="http://127.0.0.1:$((PORT + 1))"
    dir=$(mktemp -d)
    printf 'def main(event, context):\n    return {"hello": event.get("name", "world")}\n' > "$dir/index.py"
    FRAZIL_URL=$url1 FRAZIL_TOKEN=$key "$FRAZIL" deploy --name cluster-hello "$dir" >/dev/null
    rm -rf "$dir"
    echo "cluster: deployed cluster-hello through $url1; invoking it through $url2:"
    for _ in 1 2; do
        curl -sf -H "Authorization: Bearer $key" -d '{"name": "cluster"}' "$url2/v1/functions/cluster-hello/invoke" \
            | $PY -c '
import json, sys, urllib.request
answer = json.load(sys.stdin)
request = urllib.request.Request(sys.argv[1] + "/v1/invocations/" + answer["invocation_id"],
                                 headers={"Authorization": "Bearer " + sys.argv[2]})
record = json.load(urllib.request.urlopen(request))["invocation"]
print("  result", json.dumps(answer["result"]), " cold", answer["cold"], " ran on", record["node"])' "$url2" "$key"
    done
}

clean() {
    stop
    $PY - <<'PY'
import asyncio, os
import nats
from frazil.cluster.names import all_buckets, all_streams
async def main():
    nc = await nats.connect(os.environ["FRAZIL_NATS_URL"], allow_reconnect=False, max_reconnect_attempts=1)
    js = nc.jetstream()
    for bucket in all_buckets(os.environ["FRAZIL_CLUSTER"]):
        try:
            await js.delete_key_value(bucket)
        except Exception:
            pass
    for stream in all_streams(os.environ["FRAZIL_CLUSTER"]):
        try:
            await js.delete_stream(stream)
        except Exception:
            pass
    await nc.close()
asyncio.run(main())
PY
    db "DROP DATABASE IF EXISTS \"$CLUSTER_DB\" WITH (FORCE)" >/dev/null
    rm -rf "$ROOT"
    echo "cluster: database $CLUSTER_DB dropped, NATS buckets of $FRAZIL_CLUSTER deleted, $ROOT removed"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    clean) clean ;;
    try) try_it ;;
    *) echo "usage: scripts/cluster.sh start|status|try|stop|clean" >&2; exit 2 ;;
esac
