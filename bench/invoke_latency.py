"""Core invoke latency and throughput of frazil over its real HTTP API.

Measures, on one server:
- cold invoke latency: N functions deployed with the same tiny bundle, each invoked once
  (every first call needs a new instance; the envelope must say `cold: true`);
- warm invoke latency: one client, sequential, keep-alive, after a warm-up (`cold: false`);
- the bare HTTP round trip to the same server (`GET /healthz`), measured the same way,
  in alternating blocks with the warm invokes so both see the same conditions;
- throughput with wrk at 1 and 16 connections for both routes (POST + auth header via Lua).

    .venv/bin/python -m bench.invoke_latency [--sandbox auto|isolated|plain] [--cold 100]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench.cli import base_parser, start_run
from bench.client import KeepAliveClient, check_status_200, envelope_checker, http_request_bytes
from bench.functions import EVENT, HELLO_PY
from bench.metrics import metric_sum
from bench.procfs import cgroup_cpu_stat, cpu_seconds, throttle_summary
from bench.server import FrazilServer
from bench.stats import summarize
from bench.wrk import wrk

BLOCK = 100  # warm invokes and /healthz round trips alternate in blocks of this many


def server_env(instances: int) -> dict[str, str]:
    """Limits raised so that neither the tier nor the idle cap shapes what we measure."""
    return {"FRAZIL_TIER_LIMIT_128": "1000", "FRAZIL_MAX_IDLE_INSTANCES": str(max(2000, instances + 100)),
            "FRAZIL_KEEP_ALIVE_S": "600"}


def deploy_hello(srv: FrazilServer, name: str = "hello") -> str:
    srv.deploy(name, {"index.py": HELLO_PY}, {"memory": 128})
    return name


def deploy_cold_set(srv: FrazilServer, n: int, prefix: str = "cold") -> tuple[list[str], float]:
    names = [f"{prefix}-{i:04d}" for i in range(n)]
    return names, srv.deploy_many(names, {"index.py": HELLO_PY}, {"memory": 128})


def measure_cold(srv: FrazilServer, names: list[str], max_failed_share: float = 0.05) -> dict:
    """Invoke each function once, sequentially, on one keep-alive connection. Every call
    must answer cold=true; a call that does not succeed is recorded (and left out of the
    latencies) - more than `max_failed_share` of them ends the benchmark."""
    latencies, in_instance, failures = [], [], []
    with KeepAliveClient(srv.port) as client:
        for i, name in enumerate(names):
            request = srv.invoke_request(name)
            t0 = time.perf_counter_ns()
            status, body = client.roundtrip(request)
            elapsed = (time.perf_counter_ns() - t0) / 1e6
            try:
                envelope_checker(expect_cold=True)(status, body)
            except RuntimeError as exc:
                failures.append({"index": i, "function": name, "ms": elapsed, "error": str(exc)[:500]})
                print(f"warning: cold invoke {i} ({name}) failed: {str(exc)[:300]}", file=sys.stderr, flush=True)
                if len(failures) > max(1, max_failed_share * len(names)):
                    raise RuntimeError(f"{len(failures)} cold invocations failed; last: {exc}") from None
                continue
            latencies.append(elapsed)
            in_instance.append(orjson.loads(body)["duration_ms"])
    return {"latency_ms": latencies, "envelope_duration_ms": in_instance, "failures": failures}


def measure_warm_and_bare(port: int, invoke_request: bytes, n: int, warmup: int, check_invoke=None,
                          check_warmup=None, bare_path: str | None = "/healthz") -> dict:
    """Warm invokes and bare round trips (`GET bare_path`; None: none), alternating blocks of
    BLOCK, each route on its own keep-alive connection."""
    bare_request = http_request_bytes("GET", bare_path, port) if bare_path else None
    warm, bare = [], []
    with KeepAliveClient(port) as inv, KeepAliveClient(port) as health:
        inv.timed(invoke_request, warmup, check_warmup)
        if bare_request:
            health.timed(bare_request, warmup, check_status_200)
        done = 0
        while done < n:
            k = min(BLOCK, n - done)
            warm += inv.timed(invoke_request, k, check_invoke)
            if bare_request:
                bare += health.timed(bare_request, k, check_status_200)
            done += k
    return {"warm_ms": warm, "bare_ms": bare}


def warm_up_wrk(url: str, invoke_path: str, headers: dict, connections: int = 16, duration_s: float = 2.0,
                body: bytes = EVENT) -> None:
    """Bring up one warm instance per connection before anything is counted."""
    wrk(url + invoke_path, connections=connections, duration_s=duration_s, method="POST", body=body,
        headers=headers)


def measure_throughput(url: str, invoke_path: str, headers: dict, duration_s: float, bare_path: str | None = "/healthz",
                       connections=(1, 16), body: bytes = EVENT, cpu_groups=None) -> list[dict]:
    """wrk on the bare route and the invoke route at each connection count (threads: 1 for
    one connection, else 2 - one per CPU). `cpu_groups()` -> {name: pids}: the CPU time
    each group spends per request is recorded (robust on a shared machine, unlike req/s)."""
    runs = []
    routes = [("bare", bare_path, "GET")] if bare_path else []
    for route, path, method in routes + [("invoke", invoke_path, "POST")]:
        for c in connections:
            groups = cpu_groups() if cpu_groups else {}
            before = {k: cpu_seconds(v) for k, v in groups.items()}
            res = wrk(url + path, connections=c, threads=min(c, 2), duration_s=duration_s, method=method,
                      body=body if method == "POST" else b"", headers=headers if method == "POST" else None)
            res.update(route=route, path=path, connections=c, threads=min(c, 2))
            res["cpu_us_per_request"] = {k: 1e6 * (cpu_seconds(v) - before[k]) / max(1, res["requests"])
                                         for k, v in groups.items()}
            runs.append(res)
    return runs


def frazil_throughput(srv: FrazilServer, name: str, duration_s: float) -> dict:
    path, headers = f"/v1/functions/{name}/invoke", {**srv.auth, "Content-Type": "application/json"}
    warm_up_wrk(srv.url, path, headers)
    before = srv.metrics()
    runs = measure_throughput(srv.url, path, headers, duration_s, cpu_groups=lambda: frazil_cpu_groups(srv))
    after = srv.metrics()
    delta = {s: metric_sum(after, "frazil_invocations_total", function=name, status=s)
             - metric_sum(before, "frazil_invocations_total", function=name, status=s)
             for s in ("succeeded", "failed", "timeout")}
    cold = metric_sum(after, "frazil_cold_starts_total", function=name) - metric_sum(
        before, "frazil_cold_starts_total", function=name)
    return {"runs": runs, "invocations_by_status": delta, "cold_starts_during_wrk": cold}


def frazil_cpu_groups(srv: FrazilServer) -> dict[str, list[int]]:
    instances, _ = srv.instance_processes()
    return {"server": [srv.pid], "instances": [p for pids in instances.values() for p in pids]}


def create_mean_ms(metrics: dict) -> float | None:
    n = metric_sum(metrics, "frazil_sandbox_create_seconds_count")
    return 1000 * metric_sum(metrics, "frazil_sandbox_create_seconds_sum") / n if n else None


def latency_rows(label_values: list[tuple[str, str, list[float]]]) -> list[list]:
    rows = []
    for what, route, values in label_values:
        s = summarize(values)
        rows.append([what, route, s["n"], s["p50"], s["p90"], s["p99"], s["mean"], s["max"]])
    return rows


LATENCY_HEADERS = ["what", "route", "n", "p50 ms", "p90 ms", "p99 ms", "mean ms", "max ms"]
THROUGHPUT_HEADERS = ["server", "route", "wrk -c", "wrk -t", "req/s", "p50 ms", "p99 ms", "non-2xx", "sock err",
                      "server CPU µs/req", "instances CPU µs/req"]


def throughput_rows(server: str, runs: list[dict]) -> list[list]:
    return [[server, r["path"], r["connections"], r["threads"], r["rps"], r["p50"], r["p99"], r["non_2xx"],
             r["socket_errors"], r.get("cpu_us_per_request", {}).get("server"),
             r.get("cpu_us_per_request", {}).get("instances")] for r in runs]


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=100, help="functions to invoke once each (cold samples)")
    parser.add_argument("--warm", type=int, default=2000, help="warm invokes (and /healthz round trips) timed")
    parser.add_argument("--warmup", type=int, default=300, help="untimed warm-up requests per route")
    args = parser.parse_args(argv)
    report, sandbox = start_run("invoke_latency", args)

    with FrazilServer(sandbox, server_env(args.cold)) as srv:
        name = deploy_hello(srv)
        names, deploy_s = deploy_cold_set(srv, args.cold)
        print(f"deployed {len(names) + 1} functions in {deploy_s:.1f} s; measuring cold invokes", flush=True)
        report.quiet("cold invokes")
        cold = measure_cold(srv, names)
        create_ms = create_mean_ms(srv.metrics())
        instances, _ = srv.instance_processes()
        cold["cpu_throttling"] = throttle_summary([cgroup_cpu_stat(p) for p in instances])
        print("measuring warm invokes and /healthz", flush=True)
        report.quiet("warm invokes")
        warm = measure_warm_and_bare(srv.port, srv.invoke_request(name), args.warm, args.warmup,
                                     envelope_checker(expect_cold=False), envelope_checker(expect_cold=None))
        print(f"wrk, {args.duration:g} s per run", flush=True)
        report.quiet("wrk")
        tp = frazil_throughput(srv, name, args.duration)

    report.data.update(cold=cold, warm=warm, throughput=tp, deploy_s=deploy_s,
                       sandbox_create_mean_ms=create_ms,
                       summary={"cold": summarize(cold["latency_ms"]), "warm": summarize(warm["warm_ms"]),
                                "bare": summarize(warm["bare_ms"])})
    rows = latency_rows([
        (f"cold invoke (first call of {len(names)} functions; {len(cold['failures'])} failed)",
         "POST /v1/functions/{name}/invoke",
         cold["latency_ms"]),
        ("warm invoke (1 client, sequential, keep-alive)", "POST /v1/functions/hello/invoke", warm["warm_ms"]),
        ("bare HTTP round trip (same method)", "GET /healthz", warm["bare_ms"]),
    ])
    s = report.data["summary"]
    rows.append(["warm - bare", "", "", s["warm"]["p50"] - s["bare"]["p50"], s["warm"]["p90"] - s["bare"]["p90"],
                 s["warm"]["p99"] - s["bare"]["p99"], s["warm"]["mean"] - s["bare"]["mean"], None])
    report.table(f"Latency over HTTP (sandbox: {sandbox})", LATENCY_HEADERS, rows)
    report.table("Where a cold invoke's time goes (server-side means)", ["part", "ms"], [
        ["sandbox create to ready (frazil_sandbox_create_seconds mean)", create_ms],
        ["handler run inside the instance (envelope duration_ms, mean)",
         summarize(cold["envelope_duration_ms"])["mean"]],
        ["cold invoke over HTTP (client-side mean)", s["cold"]["mean"]],
        ["instances their cgroup CPU quota throttled (cpu.stat nr_throttled > 0)",
         f"{cold['cpu_throttling']['throttled']} / {cold['cpu_throttling']['cgroups']}"
         if cold["cpu_throttling"]["cgroups"] else "- (no CPU cgroups: plain sandbox)"],
        ["  mean throttled time of those, ms", cold["cpu_throttling"]["mean_throttled_ms"]],
    ])
    report.table(f"Throughput with wrk, {args.duration:g} s per run (sandbox: {sandbox})", THROUGHPUT_HEADERS,
                 throughput_rows("frazil", tp["runs"]))
    print(f"invocations during wrk by status: {tp['invocations_by_status']}; "
          f"cold starts during wrk: {tp['cold_starts_during_wrk']:g}")
    print(f"wrk POST script:\n{tp['runs'][-1]['lua']}")
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
