"""Event sources (issue 13): what an HTTP endpoint adds to a call, and how soon a table write's
triggered invocation starts - each beside its baseline, in one run.

    .venv/bin/python bench/events.py [-n 2000] [--writes 300] [--sandbox auto|isolated|plain]

1. HTTP endpoint vs plain invoke: one warm function (`http = true`), called on one keep-alive
   connection as `GET /fn/{name}` and as `POST /v1/functions/{name}/invoke`, with the admin key,
   in alternating blocks of 100 (both see the same machine state). Target: the endpoint's p50
   within 0.2 ms of the invoke's.
2. Table write → start of its invocation: `--writes` inserts (`POST /v1/tables/{t}/records`,
   admin key, one keep-alive connection), paced `--pace-ms` apart so that each invocation
   runs alone, into a table a function listens to (`{"type": "table", "on": ["insert"]}`).
   The function answers its own clock (`time.time()`, the host's clock: no time namespace) at
   the start of the handler. Reported: handler start − when the write's request was sent (an
   upper bound: it includes the write itself) and − when its answer arrived (a lower bound: the
   commit came before the answer, and the dispatcher is woken at the commit, so this can be
   negative), and the record's `started_at` − `created_at` (server clock, ms resolution; the
   record is made in the write's transaction just before its commit). Baseline in the same
   run, alternating with the writes: async invokes (`?mode=async`) of the same function,
   measured the same way. Target: p50 under 20 ms.
"""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import base_parser  # noqa: E402
from bench.client import KeepAliveClient, check_status_200, envelope_checker, http_request_bytes  # noqa: E402
from bench.machine import machine_info  # noqa: E402
from bench.processes import install_signal_handlers  # noqa: E402
from bench.report import Report  # noqa: E402
from bench.server import FrazilServer, choose_sandbox  # noqa: E402
from bench.source import use_frazil_ref  # noqa: E402
from bench.stats import summarize  # noqa: E402
from frazil.testing.waiting import wait_until  # noqa: E402

HELLO = 'def main(event, context):\n    return {"hello": "world"}\n'
STAMP = ("import time\n"
         "def main(event, context):\n"
         "    started = time.time()\n"
         "    key = event['record']['key'] if 'record' in event else event['key']\n"
         "    return {'t': started, 'key': key}\n")
TABLE = "bench_events"
BLOCK = 100

LATENCY_HEADERS = ["path", "n", "mean ms", "p50 ms", "p90 ms", "p99 ms", "p50 − invoke p50 ms"]
DELAY_HEADERS = ["source", "measured as", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"]


def endpoint_vs_invoke(server: FrazilServer, name: str, n: int, warmup: int) -> dict[str, list[float]]:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    requests = {
        "POST /v1/functions/{name}/invoke": (server.invoke_request(name, b"{}"), envelope_checker(False)),
        "GET /fn/{name}": (http_request_bytes("GET", f"/fn/{name}", server.port, headers=auth), check_status_200),
    }
    out: dict[str, list[float]] = {path: [] for path in requests}
    with KeepAliveClient(server.port) as client:
        for request, _ in requests.values():
            client.timed(request, warmup)  # the first call is cold
        for _ in range(max(1, n // BLOCK)):
            for path, (request, check) in requests.items():
                out[path] += client.timed(request, BLOCK, check)
    return out


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def trigger_delays(server: FrazilServer, name: str, writes: int, pace_s: float, prefix: str) -> dict[str, list[float]]:
    """`writes` table inserts, then as many async invokes, paced; the delays of each kind."""
    auth = {"Authorization": f"Bearer {server.admin_key}", "Content-Type": "application/json"}
    sent: dict[str, tuple[str, float, float]] = {}  # key -> (source, sent at, answered at)
    with KeepAliveClient(server.port) as client:
        for i in range(writes):
            for source in ("table write", "async invoke"):  # alternating: both see the same machine state
                key = f"{prefix}-{source[0]}-{i}"
                if source == "table write":
                    request = http_request_bytes("POST", f"/v1/tables/{TABLE}/records", server.port,
                                                 body=json.dumps({"key": key}).encode(), headers=auth)
                else:
                    request = http_request_bytes("POST", f"/v1/functions/{name}/invoke?mode=async", server.port,
                                                 body=json.dumps({"key": key}).encode(), headers=auth)
                t0 = time.time()
                status, body = client.roundtrip(request)
                t1 = time.time()
                if status not in (200, 202):
                    raise RuntimeError(f"{source}: HTTP {status}: {body[:300]!r}")
                sent[key] = (source, t0, t1)
                time.sleep(pace_s)  # pacing, not waiting: each invocation runs on a quiet queue
    records = wait_until(lambda: _finished(server, name, set(sent)), timeout=120,
                         what=f"{len(sent)} invocations of {name} to finish")
    out: dict[str, list[float]] = {}
    for record in records:
        result = record.get("result") or {}
        if record["status"] != "succeeded" or result.get("key") not in sent:
            continue
        source, t0, t1 = sent[result["key"]]
        out.setdefault(f"{source}|handler start − request sent", []).append((result["t"] - t0) * 1000)
        out.setdefault(f"{source}|handler start − answer received", []).append((result["t"] - t1) * 1000)
        out.setdefault(f"{source}|record started_at − created_at", []).append(
            (_ts(record["started_at"]) - _ts(record["created_at"])) * 1000)
    return out


def _finished(server: FrazilServer, name: str, keys: set[str]) -> list[dict] | None:
    """The finished records of `name` answering one of `keys`, once there is one for each."""
    found, cursor = [], None
    while True:
        params = {"function": name, "limit": 500, **({"cursor": cursor} if cursor else {})}
        body = server.http.get("/v1/invocations", params=params).json()
        found += [r for r in body["invocations"] if r["trigger"] in ("table", "api")]
        cursor = body.get("next_cursor")
        if not cursor:
            break
    done = [r for r in found if r["status"] not in ("queued", "running") and (r.get("result") or {}).get("key") in keys]
    return done if len(done) >= len(keys) else None


def main() -> None:
    parser = base_parser(__doc__)  # its --duration (wrk) is not used here
    parser.add_argument("-n", type=int, default=2000, help="calls per path (endpoint vs invoke)")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--writes", type=int, default=300, help="table writes, and as many async invokes")
    parser.add_argument("--pace-ms", type=float, default=30.0, help="pause after each write")
    args = parser.parse_args()
    if args.frazil_ref:
        use_frazil_ref(args.frazil_ref)
    install_signal_handlers()
    sandbox, note = choose_sandbox(args.sandbox)
    report = Report("events", quiet_wait_s=args.quiet_wait)
    report.data.update(machine=machine_info(), sandbox=sandbox, sandbox_note=note, n=args.n, writes=args.writes,
                       pace_ms=args.pace_ms)
    with FrazilServer(sandbox) as server:
        server.deploy("hello-http", {"index.py": HELLO}, {"memory": 128, "http": True})
        server.deploy("stamp", {"index.py": STAMP},
                      {"memory": 128, "triggers": [{"type": "table", "table": TABLE, "on": ["insert"]}]})
        report.quiet("endpoint vs invoke")
        latencies = endpoint_vs_invoke(server, "hello-http", args.n, args.warmup)
        trigger_delays(server, "stamp", 20, args.pace_ms / 1000, "warmup")  # a warm instance, a warm queue
        report.quiet("table write to invocation start")
        delays = trigger_delays(server, "stamp", args.writes, args.pace_ms / 1000, "run")

    base = summarize(latencies["POST /v1/functions/{name}/invoke"])["p50"]
    rows, summary = [], {}
    for path, values in latencies.items():
        s = summarize(values)
        summary[path] = s
        rows.append([path, s["n"], s["mean"], s["p50"], s["p90"], s["p99"], s["p50"] - base])
    report.table(f"HTTP endpoint vs plain invoke, one warm function ({sandbox} sandbox; target: ≤ 0.2 ms at p50)",
                 LATENCY_HEADERS, rows)
    rows = []
    for key, values in delays.items():
        source, measure = key.split("|")
        s = summarize(values)
        summary[key] = s
        rows.append([source, measure, s["n"], s["p50"], s["p90"], s["p99"], s["max"]])
    report.table(f"Table write → start of its invocation, beside async invoke → start ({sandbox} sandbox; "
                 "target: p50 < 20 ms)", DELAY_HEADERS, rows)
    report.data["summary"] = summary
    report.data["samples"] = {"latencies": latencies, "delays": delays}
    path = report.save()
    print(f"results: {path}")


if __name__ == "__main__":
    main()
