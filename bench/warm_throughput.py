"""Warm throughput per core (issue 15): frazil against Google's functions-framework `--asgi`
serving the same hello function on the same machine, and against a baseline frazil, in one
run, as ratios.

    .venv/bin/python -m bench.warm_throughput [--rounds 3] [--duration 5] [--connections 16]
        [--baseline-ref REF | --no-baseline] [--frazil-ref REF] [--sandbox auto|isolated|plain]

Three servers are started once and kept up for the whole run: functions-framework `--asgi`
(the `bench` extra: Starlette on uvicorn under gunicorn, one worker, no isolation), a baseline
frazil (the `frazil` package as committed at `--baseline-ref`, default `main`) and this frazil
(the working tree, or `--frazil-ref`). Each is warmed up with a 2 s wrk run at the same
connection count (so every connection finds a warm frazil instance). Then, per round, in an
order that rotates from round to round, after waiting (bounded) for a quiet machine: `wrk -t2
-c16` for `--duration` seconds against each, with the CPU time its processes used over the
run read from /proc (frazil: the server process, and its instances apart; functions-framework:
gunicorn's master and worker). Reported: req/s per round and their median, CPU µs per request
(server, instances, all), how busy the machine's CPUs were during the runs (wrk included: at
~100% more server processes could not add throughput here), failed frazil invocations and cold
starts during the runs, and the ratios this/functions-framework (target >= 1.0x, aim 1.5x),
baseline/functions-framework and this/baseline. On a busy machine trust the CPU µs per request
more than req/s.
"""
from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import add_baseline_options, base_parser, compared_sources, start_run
from bench.functions import EVENT
from bench.functions_framework import FunctionsFramework, ff_version
from bench.invoke_latency import deploy_hello, frazil_cpu_groups, server_env, warm_up_wrk
from bench.machine import cpu_times, idle_share
from bench.metrics import metric_sum
from bench.procfs import cpu_seconds
from bench.server import FrazilServer
from bench.wrk import wrk
from frazil.testing.processes import descendants

FF = "functions-framework --asgi"


class Target:
    """One server under wrk: its URL, what to POST, and whose CPU time to count."""

    def __init__(self, label: str, url: str, path: str, headers: dict, cpu_groups, frazil: FrazilServer | None = None,
                 function: str | None = None):
        self.label = label
        self.url = url
        self.path = path
        self.headers = headers
        self.cpu_groups = cpu_groups  # () -> {"server": pids, "instances": pids}
        self.frazil = frazil
        self.function = function
        self.runs: list[dict] = []

    def counters(self) -> dict[str, float]:
        """frazil's failed invocations and cold starts so far (nothing for functions-framework)."""
        if self.frazil is None:
            return {}
        m = self.frazil.metrics()
        return {"failed": sum(metric_sum(m, "frazil_invocations_total", function=self.function, status=s)
                              for s in ("failed", "timeout")),
                "cold": metric_sum(m, "frazil_cold_starts_total", function=self.function)}


def frazil_target(label: str, srv: FrazilServer) -> Target:
    name = deploy_hello(srv)
    return Target(label, srv.url, f"/v1/functions/{name}/invoke", {**srv.auth, "Content-Type": "application/json"},
                  lambda: frazil_cpu_groups(srv), frazil=srv, function=name)


def ff_target(ff: FunctionsFramework) -> Target:
    return Target(FF, ff.url, "/", {"Content-Type": "application/json"},
                  lambda: {"server": [ff.pid, *descendants(ff.pid)], "instances": []})


def measure(target: Target, connections: int, duration_s: float) -> dict:
    groups = target.cpu_groups()
    before = {k: cpu_seconds(v) for k, v in groups.items()}
    counted = target.counters()
    machine_before = cpu_times()
    res = wrk(target.url + target.path, connections=connections, threads=min(connections, 2), duration_s=duration_s,
              method="POST", body=EVENT, headers=target.headers)
    machine_busy = 1 - idle_share(machine_before, cpu_times())
    requests = max(1, res["requests"])
    cpu = {k: 1e6 * (cpu_seconds(v) - before[k]) / requests for k, v in groups.items()}
    after = target.counters()
    return {"rps": res["rps"], "p50": res["p50"], "p99": res["p99"], "requests": res["requests"],
            "non_2xx": res["non_2xx"], "socket_errors": res["socket_errors"], "command": res["command"],
            "server_cpu_us": cpu.get("server", 0.0), "instances_cpu_us": cpu.get("instances", 0.0),
            "machine_busy": machine_busy,
            **{f"{k}_during": after[k] - counted[k] for k in counted}}


def summary(target: Target) -> dict:
    med = lambda key: statistics.median(r[key] for r in target.runs)  # noqa: E731
    out = {"rps": med("rps"), "p50": med("p50"), "p99": med("p99"), "server_cpu_us": med("server_cpu_us"),
           "instances_cpu_us": med("instances_cpu_us"), "machine_busy": med("machine_busy"),
           "non_2xx": sum(r["non_2xx"] for r in target.runs),
           "socket_errors": sum(r["socket_errors"] for r in target.runs),
           "failed_during": sum(r.get("failed_during", 0) for r in target.runs),
           "cold_during": sum(r.get("cold_during", 0) for r in target.runs)}
    out["all_cpu_us"] = out["server_cpu_us"] + out["instances_cpu_us"]
    return out


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per server, in rotating order")
    parser.add_argument("--connections", type=int, default=16)
    add_baseline_options(parser)
    args = parser.parse_args(argv)
    report, sandbox = start_run("warm_throughput", args, functions_framework=ff_version())
    this_label = f"frazil, this ({args.frazil_ref or 'working tree'})"
    sources = {(label if label == this_label else f"frazil, {label}"): source
               for label, source in compared_sources(args, this_label).items()}
    env = server_env(args.connections)
    work = Path(tempfile.mkdtemp(prefix="bench-warm-"))
    servers = [FrazilServer(sandbox, env, source=source) for source in sources.values()]
    ff = FunctionsFramework(work, asgi=True)
    try:
        ff.start()
        targets = [ff_target(ff)]
        for label, srv in zip(sources, servers):
            srv.start(timeout_s=60)
            targets.append(frazil_target(label, srv))
        for t in targets:
            warm_up_wrk(t.url, t.path, t.headers, args.connections)
        for i in range(args.rounds):
            order = targets[i % len(targets):] + targets[:i % len(targets)]
            for t in order:
                report.quiet(f"round {i + 1}: {t.label}")
                t.runs.append(measure(t, args.connections, args.duration))
                r = t.runs[-1]
                print(f"round {i + 1} {t.label}: {r['rps']:,.0f} req/s, server {r['server_cpu_us']:.0f} µs/req, "
                      f"instances {r['instances_cpu_us']:.0f} µs/req", flush=True)
    finally:
        for srv in servers:
            srv.stop()
        ff.stop()
        shutil.rmtree(work, ignore_errors=True)

    report.data["runs"] = {t.label: t.runs for t in targets}
    sums = {t.label: summary(t) for t in targets}
    report.data["summary"] = sums
    report.table(f"Warm POST at {args.connections} connections, wrk -t2, {args.duration:g} s x {args.rounds} rounds "
                 f"(median of rounds; sandbox: {sandbox})",
                 ["server", "req/s per round", "req/s", "p50 ms", "p99 ms", "server CPU µs/req",
                  "instances CPU µs/req", "all CPU µs/req", "machine CPUs busy", "non-2xx", "failed / cold during"],
                 [[t.label, " / ".join(f"{r['rps']:,.0f}" for r in t.runs), s["rps"], s["p50"], s["p99"],
                   s["server_cpu_us"], s["instances_cpu_us"], s["all_cpu_us"], f"{s['machine_busy']:.0%}",
                   s["non_2xx"] + s["socket_errors"],
                   f"{s['failed_during']:g} / {s['cold_during']:g}" if t.frazil else "-"]
                  for t, s in ((t, sums[t.label]) for t in targets)])
    ff_rps = sums[FF]["rps"]
    rows = [[f"{label} / {FF}", s["rps"] / ff_rps, ">= 1.0x (aim 1.5x)", "yes" if s["rps"] / ff_rps >= 1.0 else "**no**"]
            for label, s in sums.items() if label != FF]
    if not args.no_baseline:
        base = next(label for label in sums if label.startswith("frazil, baseline"))
        rows.append([f"{this_label} / baseline: req/s", sums[this_label]["rps"] / sums[base]["rps"], "", ""])
        rows.append([f"{this_label} / baseline: server CPU µs/req",
                     sums[this_label]["server_cpu_us"] / sums[base]["server_cpu_us"], "", ""])
    report.data["ratios"] = [dict(zip(["ratio", "value", "goal", "met"], r)) for r in rows]
    report.table("Ratios (medians of rounds)", ["ratio", "value", "goal", "met"], rows)
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
