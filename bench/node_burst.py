"""Node cold starts in bursts (issue 15): 30 back-to-back cold starts of distinct Node
functions over HTTP, this frazil side by side with a baseline (main before demand-driven
pre-started instances), in one run.

    .venv/bin/python -m bench.node_burst [--burst 30] [--runs 3] [--baseline-ref cdc1704] [--frazil-ref REF]

Each run starts two servers (baseline: the `frazil` package as committed at --baseline-ref;
candidate: this working tree, or --frazil-ref), deploys 2 x burst distinct Node hello
functions on each, then, on each server in turn, invokes `burst` of them once each,
sequentially on one keep-alive connection (every envelope must say cold: true):
- "first burst": on a server that has seen no Node cold start yet (at most the floor of
  pre-started Node instances, `FRAZIL_SANDBOX_PREBUILT_NODE`, is ready once a tier is used:
  the first burst finds none);
- "next burst": the same again with the other functions, once the server has settled (its
  count of ready generic Node instances stopped changing): what recent demand left ready.
Before each burst the run waits for a quiet machine and for both servers to settle, so that
one server's background builds do not run during the other's burst. Prints p50/p90/p99/max
per (variant, burst) for each run and over all runs, the ratio candidate/baseline, and the
generic Node instances ready before each burst.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import base_parser, check_duration
from bench.invoke_latency import measure_cold
from bench.machine import machine_info
from bench.processes import install_signal_handlers
from bench.procfs import is_spare_instance, runtime_loop
from bench.report import Report
from bench.server import FrazilServer, choose_sandbox
from bench.source import export_frazil_ref
from bench.stats import summarize
from frazil.testing.processes import direct_children, process_table

HELLO_JS = "exports.main = async (event) => ({ hello: (event && event.name) || 'world' });\n"
CONFIG = {"memory": 128, "runtime": "nodejs20"}
ENV = {"FRAZIL_TIER_LIMIT_128": "1000", "FRAZIL_MAX_IDLE_INSTANCES": "2000", "FRAZIL_KEEP_ALIVE_S": "600"}
BURSTS = ("first burst", "next burst")
SETTLE_STABLE_S = 3.0  # a server has settled when its ready Node instances did not change for this long
SETTLE_MAX_S = 120.0


def ready_node_instances(srv: FrazilServer) -> int:
    """Generic Node instances the server has ready (pre-started, given to no function)."""
    return sum(1 for pid in direct_children(srv.pid, process_table())
               if runtime_loop(pid) == "loop.js" and is_spare_instance(pid))


def settle(servers: dict[str, FrazilServer]) -> dict[str, int]:
    """Wait (bounded) until no server's count of ready Node instances changes any more."""
    started = time.monotonic()
    counts = {label: ready_node_instances(srv) for label, srv in servers.items()}
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < SETTLE_STABLE_S and time.monotonic() - started < SETTLE_MAX_S:
        time.sleep(0.5)
        now = {label: ready_node_instances(srv) for label, srv in servers.items()}
        if now != counts:
            counts, stable_since = now, time.monotonic()
    return counts


def one_run(index: int, sandbox: str, sources: dict[str, str | None], burst: int, report: Report) -> dict:
    servers = {label: FrazilServer(sandbox, ENV, source=source) for label, source in sources.items()}
    results: dict = {label: {} for label in servers}
    try:
        for srv in servers.values():
            srv.start(timeout_s=60)
        names = {b: [f"node-{b.split()[0]}-{i:03d}" for i in range(burst)] for b in BURSTS}
        for srv in servers.values():
            srv.deploy_many([n for b in BURSTS for n in names[b]], {"index.js": HELLO_JS}, CONFIG)
        # Alternate which variant goes first from run to run.
        order = list(servers) if index % 2 == 0 else list(reversed(servers))
        for b in BURSTS:
            for label in order:
                report.quiet(f"run {index + 1}: {label} {b}")
                ready = settle(servers)
                cold = measure_cold(servers[label], names[b])
                results[label][b] = {"latency_ms": cold["latency_ms"], "failures": cold["failures"],
                                     "ready_before": ready[label]}
    finally:
        for srv in servers.values():
            srv.stop()
    return results


def run_retrying(index: int, sandbox: str, sources: dict[str, str | None], burst: int, report: Report) -> dict:
    """`one_run`, once more on new servers if it failed (on this shared machine another
    process can take a server's free port between its choice and its bind)."""
    try:
        return one_run(index, sandbox, sources, burst, report)
    except Exception as exc:  # noqa: BLE001 - reported, then tried once more
        print(f"warning: run {index + 1} failed ({str(exc)[:300]}); trying it again", file=sys.stderr, flush=True)
        report.data.setdefault("failed_runs", []).append({"run": index + 1, "error": str(exc)[:1000]})
    return one_run(index, sandbox, sources, burst, report)


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=30, help="cold starts per burst")
    parser.add_argument("--runs", type=int, default=3, help="runs, each on new servers (the spread is reported)")
    parser.add_argument("--baseline-ref", default="cdc1704", help="git ref of the baseline frazil")
    args = parser.parse_args(argv)
    check_duration(args)
    install_signal_handlers()
    report = Report("node_burst", quiet_wait_s=args.quiet_wait)
    sandbox, note = choose_sandbox(args.sandbox)
    baseline_dir = export_frazil_ref(args.baseline_ref)
    sources = {f"baseline ({args.baseline_ref})": str(baseline_dir), f"this ({args.frazil_ref or 'working tree'})": None}
    report.data.update(machine=machine_info(), sandbox=sandbox, sandbox_note=note, args=vars(args))
    print(f"# node_burst - sandbox: {sandbox} ({note})", flush=True)
    runs = [run_retrying(i, sandbox, sources, args.burst, report) for i in range(args.runs)]
    report.data["runs"] = runs
    baseline, candidate = sources
    headers = ["variant", "burst", "run", "ready before", "p50 ms", "p90 ms", "p99 ms", "max ms", "n"]
    rows = []
    for b in BURSTS:
        for label in sources:
            for i, run in enumerate(runs):
                s = summarize(run[label][b]["latency_ms"])
                rows.append([label, b, str(i + 1), run[label][b]["ready_before"], s.get("p50"), s.get("p90"),
                             s.get("p99"), s.get("max"), s["n"]])
    report.table(f"{args.burst} back-to-back Node cold starts over HTTP, per run (sandbox: {sandbox})", headers, rows)
    rows = []
    for b in BURSTS:
        pooled = {label: summarize([x for run in runs for x in run[label][b]["latency_ms"]]) for label in sources}
        for label in sources:
            s = pooled[label]
            rows.append([label, b, s.get("p50"), s.get("p99"), s["n"]])
        rows.append(["ratio this / baseline", b, pooled[candidate]["p50"] / pooled[baseline]["p50"],
                     pooled[candidate]["p99"] / pooled[baseline]["p99"], None])
        p50s = {label: [summarize(run[label][b]["latency_ms"])["p50"] for run in runs] for label in sources}
        report.data.setdefault("p50_per_run", {})[b] = p50s
    report.table(f"All {args.runs} runs pooled", ["variant", "burst", "p50 ms", "p99 ms", "n"], rows)
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
