"""Spaced cold starts over HTTP (issue 15): a hello function's first call, one call every
`--gap-ms` (not a burst, so a pre-built instance is ready for each), this frazil side by side
with a baseline, in one run, with where each call's time goes.

    .venv/bin/python -m bench.spaced_cold [-n 100] [--gap-ms 200] [--same-function]
        [--baseline-ref main | --no-baseline] [--frazil-ref REF] [--sandbox auto|isolated|plain]

Both servers are started at once; each gets `n` distinct functions with the same hello bundle
(deployed before anything is measured; the catalog has every version cached). Then the calls
alternate between the servers, one every `--gap-ms`, each the first call of a new function,
sequentially on one keep-alive connection per server; every envelope must say `cold: true`.
`--same-function`: one function per server instead, whose instance the server reaps between
calls (keep-alive 50 ms): the cold start of a function the server has run before, as after a
quiet spell, without what only a function's first call pays (e.g. its metrics' label children).
For each call the server's `frazil_sandbox_create_seconds` sum is read before and after (in
the gap, off the clock): its growth is that call's instance creation to ready (create(), the
runtime's hello, init, ready). Reported per server: p50/p90/p99 of the call over HTTP, of
creation to ready, of the handler inside the instance (`duration_ms`, the invoke round trip),
and of the rest (HTTP, route, admission, pool, record) = call - creation - handler; how each
instance was made (`frazil_sandbox_creates{path}`); and the ratios this/baseline. Target:
call p50 <= 1.5 ms.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench.cli import add_baseline_options, base_parser, compared_sources, start_run
from bench.client import KeepAliveClient, envelope_checker
from bench.invoke_latency import deploy_cold_set, server_env
from bench.metrics import metric_sum
from bench.server import FrazilServer
from bench.stats import summarize

PARTS = ("call over HTTP", "creation to ready", "handler (duration_ms)", "the rest")
SAME_FUNCTION_KEEP_ALIVE_S = 0.05  # reaped well within the gap (the pool reaps every 50 ms then)


def create_sum_s(srv: FrazilServer) -> float:
    return metric_sum(srv.metrics(), "frazil_sandbox_create_seconds_sum")


def creates_by_path(srv: FrazilServer) -> dict[str, float]:
    m = srv.metrics()
    paths = {key.split('path="', 1)[1].split('"', 1)[0] for key in m
             if key.startswith("frazil_sandbox_creates") and 'path="' in key}
    return {p: metric_sum(m, "frazil_sandbox_creates_total", path=p) or metric_sum(m, "frazil_sandbox_creates", path=p)
            for p in sorted(paths)}


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="cold calls per server (distinct functions)")
    parser.add_argument("--gap-ms", type=float, default=200.0, help="pause between calls")
    parser.add_argument("--warmup", type=int, default=5, help="untimed cold calls per server first")
    parser.add_argument("--same-function", action="store_true",
                        help="one function per server, its instance reaped between calls (keep-alive 50 ms)")
    add_baseline_options(parser)
    args = parser.parse_args(argv)
    report, sandbox = start_run("spaced_cold", args)
    this_label = f"this ({args.frazil_ref or 'working tree'})"
    sources = compared_sources(args, this_label)
    total = args.n + args.warmup
    env = server_env(total)
    if args.same_function:
        env["FRAZIL_KEEP_ALIVE_S"] = str(SAME_FUNCTION_KEEP_ALIVE_S)
    servers = {label: FrazilServer(sandbox, env, source=source) for label, source in sources.items()}
    samples = {label: {part: [] for part in PARTS} for label in servers}
    check = envelope_checker(expect_cold=True)
    try:
        names = {}
        for label, srv in servers.items():
            srv.start(timeout_s=60)
            names[label], _ = deploy_cold_set(srv, 1 if args.same_function else total, prefix="spaced")
        report.quiet("spaced cold calls")
        clients = {label: KeepAliveClient(srv.port) for label, srv in servers.items()}
        try:
            for i in range(total):
                for label, srv in servers.items():
                    time.sleep(args.gap_ms / 1000 / len(servers))
                    request = srv.invoke_request(names[label][0 if args.same_function else i])
                    before = create_sum_s(srv)
                    t0 = time.perf_counter_ns()
                    status, body = clients[label].roundtrip(request)
                    call_ms = (time.perf_counter_ns() - t0) / 1e6
                    check(status, body)
                    create_ms = (create_sum_s(srv) - before) * 1000
                    handler_ms = orjson.loads(body)["duration_ms"]
                    if i >= args.warmup:
                        for part, value in zip(PARTS, (call_ms, create_ms, handler_ms,
                                                       call_ms - create_ms - handler_ms)):
                            samples[label][part].append(value)
        finally:
            for client in clients.values():
                client.close()
        report.data["creates_by_path"] = {label: creates_by_path(srv) for label, srv in servers.items()}
    finally:
        for srv in servers.values():
            srv.stop()

    report.data["samples"] = samples
    rows = []
    for part in PARTS:
        for label in servers:
            s = summarize(samples[label][part])
            rows.append([part, label, s["n"], s["p50"], s["p90"], s["p99"], s["mean"]])
        if len(servers) == 2:
            base, this = (summarize(samples[label][part]) for label in servers)
            rows.append([part, "ratio this / baseline", None, this["p50"] / base["p50"] if base["p50"] else None,
                         this["p90"] / base["p90"] if base["p90"] else None,
                         this["p99"] / base["p99"] if base["p99"] else None, None])
    which = "one function, reaped between calls" if args.same_function else "each call a new function's first"
    report.table(f"Spaced cold starts over HTTP, one every {args.gap_ms:g} ms, {which} (sandbox: {sandbox}; "
                 f"made: {report.data['creates_by_path']})",
                 ["part", "server", "n", "p50 ms", "p90 ms", "p99 ms", "mean ms"], rows)
    p50 = summarize(samples[this_label]["call over HTTP"])["p50"]
    report.table("Target", ["target", "value", "goal", "met"],
                 [["spaced cold call p50 over HTTP (this)", p50, "<= 1.5 ms", "yes" if p50 <= 1.5 else "**no**"]])
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
