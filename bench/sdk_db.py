"""The cost of one SDK `db` call from inside a function, against the same operation over the
HTTP API from outside.

    .venv/bin/python bench/sdk_db.py [-n 2000] [--sandbox auto|isolated|plain]

Inside: one invocation of a warm function runs N calls in a loop (Python `frazil_sdk`, and
Node `frazil-sdk`), timing each with the language's monotonic clock; the function answers the
latencies. Each call is an sdk_call frame on the instance's channel, the platform's credential
check, `DataService` as the admin principal, and the sdk_reply back.
Outside: the same operations with the admin key over one keep-alive HTTP/1.1 connection
(`POST /v1/tables/{t}/records`, `GET /v1/tables/{t}/records/{id}`), timed per request.
Operations: insert of a small record, get of a record by id, and "refused": a get on an
invalid table name, which the data service refuses before touching the database - the cost of
the path alone (channel or HTTP, credential or key check, dispatch, error reply). Same server,
same table kind (admin-only), same SQLite store.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.client import KeepAliveClient, check_status_200, http_request_bytes  # noqa: E402
from bench.machine import machine_info  # noqa: E402
from bench.processes import install_signal_handlers  # noqa: E402
from bench.report import Report  # noqa: E402
from bench.server import FrazilServer, choose_sandbox  # noqa: E402
from bench.stats import summarize  # noqa: E402

RECORD = {"text": "hello", "n": 1, "tags": ["a", "b"]}

PY_FUNCTION = """
import time
from frazil_sdk import db, SdkError

def main(event, context):
    t = db.table(event['table'])
    n, op = event['n'], event['op']
    ids = event.get('ids') or []
    clock = time.perf_counter_ns
    out = []
    bad = db.table('Not A Table')
    for i in range(n):
        if op == 'insert':
            t0 = clock(); t.insert(event['record']); out.append((clock() - t0) / 1e6)
        elif op == 'get':
            t0 = clock(); t.get(ids[i % len(ids)]); out.append((clock() - t0) / 1e6)
        else:  # the channel alone: refused by name validation before any database work
            t0 = clock()
            try:
                bad.get('x')
            except SdkError:
                pass
            out.append((clock() - t0) / 1e6)
    return out
"""

NODE_FUNCTION = """
const { db } = require('frazil-sdk');
exports.main = async (event) => {
  const t = db.table(event.table);
  const bad = db.table('Not A Table');
  const ids = event.ids || [];
  const out = [];
  for (let i = 0; i < event.n; i++) {
    const t0 = process.hrtime.bigint();
    if (event.op === 'insert') await t.insert(event.record);
    else if (event.op === 'get') await t.get(ids[i % ids.length]);
    else await bad.get('x').catch(() => null);
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out;
};
"""

HEADERS = ["operation", "path", "n", "mean ms", "p50 ms", "p90 ms", "p99 ms", "p50 vs HTTP"]


def inside(server: FrazilServer, name: str, op: str, table: str, n: int, ids: list[str]) -> list[float]:
    event = {"table": table, "op": op, "n": n, "record": RECORD, "ids": ids}
    r = server.http.post(f"/v1/functions/{name}/invoke", content=json.dumps(event))
    body = r.json()
    if r.status_code != 200 or not body.get("success"):
        raise RuntimeError(f"{name} failed: {r.status_code} {str(body)[:500]}")
    return body["result"]


def outside(server: FrazilServer, op: str, table: str, n: int, ids: list[str]) -> list[float]:
    auth = {"Authorization": f"Bearer {server.admin_key}", "Content-Type": "application/json"}
    with KeepAliveClient(server.port) as client:
        if op == "refused":
            request = http_request_bytes("GET", "/v1/tables/Not%20A%20Table/records/x", server.port, headers=auth)
            return client.timed(request, n, lambda status, body: None)
        if op == "insert":
            request = http_request_bytes("POST", f"/v1/tables/{table}/records", server.port,
                                         body=json.dumps(RECORD).encode(), headers=auth)
            return client.timed(request, n, check_status_200)
        latencies = []
        for i in range(n):
            request = http_request_bytes("GET", f"/v1/tables/{table}/records/{ids[i % len(ids)]}", server.port,
                                         headers=auth)
            latencies += client.timed(request, 1, check_status_200)
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="calls per operation and path")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--sandbox", choices=["auto", "isolated", "plain"], default="auto")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="seconds the run may wait, in all, for a quiet machine before its phases")
    args = parser.parse_args()
    install_signal_handlers()
    sandbox, note = choose_sandbox(args.sandbox)
    report = Report("sdk_db", quiet_wait_s=args.quiet_wait)
    report.data.update(machine=machine_info(), sandbox=sandbox, sandbox_note=note, n=args.n)
    table = "bench_sdk"
    with FrazilServer(sandbox) as server:
        server.deploy("sdk-db-py", {"index.py": PY_FUNCTION}, {"memory": 128, "timeout": 300})
        server.deploy("sdk-db-node", {"index.js": NODE_FUNCTION}, {"memory": 128, "timeout": 300})
        r = server.http.put(f"/v1/tables/{table}", json={"acl": {"read": "admin", "write": "admin"}})
        r.raise_for_status()
        ids = [server.http.post(f"/v1/tables/{table}/records", json={**RECORD, "i": i}).json()["record"]["id"]
               for i in range(100)]
        results: dict[str, dict[str, list[float]]] = {}
        for op in ("insert", "get", "refused"):
            # Warm every path (instances, SQLite pages, connections) before timing it.
            outside(server, op, table, args.warmup, ids)
            inside(server, "sdk-db-py", op, table, args.warmup, ids)
            inside(server, "sdk-db-node", op, table, args.warmup, ids)
            report.quiet(f"db {op}")
            results[op] = {
                "HTTP API (outside, keep-alive)": outside(server, op, table, args.n, ids),
                "SDK from Python function": inside(server, "sdk-db-py", op, table, args.n, ids),
                "SDK from Node function": inside(server, "sdk-db-node", op, table, args.n, ids),
            }
    rows, summary = [], {}
    for op, paths in results.items():
        base = summarize(paths["HTTP API (outside, keep-alive)"])["p50"]
        for path, latencies in paths.items():
            s = summarize(latencies)
            summary[f"{op} / {path}"] = s
            rows.append([op, path, s["n"], s["mean"], s["p50"], s["p90"], s["p99"], f"{s['p50'] / base:.2f}x"])
    report.data["summary"] = summary
    report.table(f"One db call: inside a function (SDK) vs the HTTP API from outside ({sandbox} sandbox)",
                 HEADERS, rows)
    path = report.save()
    print(f"results: {path}")


if __name__ == "__main__":
    main()
