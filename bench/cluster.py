"""Cluster mode next to the embedded mode, in one run on this machine's PostgreSQL and NATS
(issue 12): warm and cold sync invoke latency through a gateway, and how throughput grows with
1, 2 and 3 invokers when the invokers are the bottleneck.

    .venv/bin/python -m bench.cluster [-n 2000] [--cold 30] [--invokers 3] [--gateways 2]
                                      [--share 0.1] [--functions 24] [--connections 8]

1. An embedded server and a cluster (its own PostgreSQL database and cluster name, dropped and
   deleted after) of `--gateways` gateways and one invoker. The hello function on both:
   **warm** invokes, sequential on one keep-alive connection to each (the cluster's through the
   first gateway), in alternating blocks so both see the same load; then **cold** invokes, one
   per newly deployed function, alternating between the two in blocks. The embedded server is
   stopped after.
2. **Throughput** with N = 1 .. `--invokers` invokers, one more started per step. Each invoker
   gets a fixed CPU share (bench/cpushare.py: its server's processes in a cgroup v1 `cpu`
   directory capped at `--share` x one core; its instances stay in their own cgroups, capped by
   their tier), so the invokers are the bottleneck whatever else runs on the machine; the
   gateways and wrk (this process's cgroup "drivers") are not capped. All these cgroups weigh
   `--weight` against the machine's other work, so they get their CPU ahead of it. Each step
   deploys `--functions` new hello functions (a version's cold starts go to its
   rendezvous-first invoker, so they spread over the N invokers there are), calls each once,
   warms up until a round passes without a cold start, then runs wrk on every gateway at once
   (N x `--connections` each, requests going round the functions) for `--duration` s,
   `--rounds` times (the median round is reported). The offered load grows with N so that
   every invoker is offered as many calls at once at every step: with a fixed number of
   connections each of three invokers would hold a third of the calls the one invoker held,
   batch less per wake-up and spend more CPU per call (measured at 16 connections: 0.29 ms of
   invoker CPU per call with one invoker, 0.54 ms with three), so the curve would measure the
   load generator. Reported: req/s, its ratio to N = 1 against the 0.8 x N
   target, how often each invoker's quota throttled it (near 100 %: the invokers were the
   bottleneck), and the cores the invokers, their instances and the gateways used; and, from
   the nodes' /metrics, per invoker the calls it ran, its cold starts, instances created and
   held, and tier slot lease transactions, per gateway the asks an invoker refused (a call
   refused goes to the next invoker, mostly as a cold start there): during the measured run,
   and the cold starts and refusals of the first calls and warm-up before it.

Everything started is stopped, the cgroups removed, the database dropped and the NATS buckets
and streams deleted, also on an error or Ctrl-C. Results: bench/results/cluster-*.json (or
`--json PATH`).
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from sqlalchemy.engine import make_url

from bench import cpushare
from bench.cli import base_parser, start_run
from bench.client import KeepAliveClient
from bench.functions import HELLO_PY
from bench.metrics import metric_sum
from bench.invoke_latency import deploy_cold_set, measure_cold
from bench.procfs import cpu_seconds
from bench.report import Report
from bench.server import FrazilServer
from bench.stats import summarize
from bench.wrk import wrk
from frazil.cluster.names import all_buckets, all_streams
from frazil.sandbox.cgroups import ROOT_NAME, scope_for
from frazil.settings import Settings
from frazil.testing import wait_until
from frazil.testing.processes import descendants, process_table

PG_BASE = "postgresql+asyncpg://postgres@127.0.0.1:5432"
NATS_URL = "nats://127.0.0.1:4222"
BLOCK = 100  # warm invokes alternate between the two modes in blocks of this many
COLD_BLOCK = 5  # cold invokes likewise
# Neither the tier limit nor the idle cap nor the keep-alive shapes what is measured.
ENV = {"FRAZIL_TIER_LIMIT_128": "1000", "FRAZIL_MAX_IDLE_INSTANCES": "2000", "FRAZIL_KEEP_ALIVE_S": "600"}


# --- the services ---------------------------------------------------------------------------

async def _postgres(sql: str) -> None:
    import asyncpg

    u = make_url(PG_BASE + "/postgres")
    conn = await asyncpg.connect(host=u.host, port=u.port, user=u.username, database=u.database, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _delete_nats(cluster: str) -> None:
    import nats

    nc = await nats.connect(NATS_URL, allow_reconnect=False, max_reconnect_attempts=1, connect_timeout=5)
    js = nc.jetstream()
    for bucket in all_buckets(cluster):
        try:
            await js.delete_key_value(bucket)
        except Exception:  # noqa: BLE001 - never made
            pass
    for stream in all_streams(cluster):
        try:
            await js.delete_stream(stream)
        except Exception:  # noqa: BLE001 - never made
            pass
    await nc.close()


class Cluster:
    """Gateways and invokers of one cluster of this run's own (database, name, admin key)."""

    def __init__(self, sandbox: str):
        self.sandbox = sandbox
        self.database = f"frazil_bench_{secrets.token_hex(4)}"
        self.name = f"bench{secrets.token_hex(4)}"
        self.admin_key = secrets.token_urlsafe(24)
        self.env = {**ENV, Settings.env_name("nats_url"): NATS_URL, Settings.env_name("cluster"): self.name,
                    Settings.env_name("database_url"): f"{PG_BASE}/{self.database}"}
        self.gateways: list[FrazilServer] = []
        self.invokers: list[FrazilServer] = []
        self._made = False

    def create(self) -> None:
        asyncio.run(_postgres(f'CREATE DATABASE "{self.database}"'))
        self._made = True

    def start(self, role: str) -> FrazilServer:
        node = FrazilServer(self.sandbox, env=self.env, role=role, admin_key=self.admin_key)
        (self.gateways if role == "gateway" else self.invokers).append(node)
        node.start(timeout_s=90)
        return node

    def wait_for_invokers(self) -> None:
        """Until every gateway's registry lists every invoker started."""
        def listed(gateway: FrazilServer) -> int:
            return sum(n["role"] == "invoker" for n in gateway.http.get("/v1/cluster").json()["nodes"])
        for gateway in self.gateways:
            wait_until(lambda: listed(gateway) == len(self.invokers), 30, what=f"{len(self.invokers)} invokers listed")

    def close(self) -> None:
        for node in [*self.gateways, *self.invokers]:
            node.stop()
        if self._made:
            asyncio.run(_delete_nats(self.name))
            asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))


# --- latency --------------------------------------------------------------------------------

def check_warm(status: int, body: bytes) -> None:
    if status != 200 or orjson.loads(body).get("cold") is not False:
        raise AssertionError(f"not a warm success: {status} {body[:300]!r}")


def measure_warm(servers: dict[str, FrazilServer], n: int, warmup: int) -> dict[str, list[float]]:
    """Sequential warm invokes of `hello` on one keep-alive connection per server, in
    alternating blocks of BLOCK."""
    requests = {label: srv.invoke_request("hello") for label, srv in servers.items()}
    times: dict[str, list[float]] = {label: [] for label in servers}
    clients = {label: KeepAliveClient(srv.port) for label, srv in servers.items()}
    try:
        for label, request in requests.items():
            clients[label].timed(request, warmup)
        done = 0
        while done < n:
            k = min(BLOCK, n - done)
            for label, request in requests.items():
                times[label] += clients[label].timed(request, k, check_warm)
            done += k
    finally:
        for client in clients.values():
            client.close()
    return times


def measure_cold_alternating(servers: dict[str, FrazilServer], n: int) -> dict[str, dict]:
    """`n` new functions on each server, each invoked once, alternating in blocks of COLD_BLOCK."""
    names = {label: deploy_cold_set(srv, n)[0] for label, srv in servers.items()}
    out = {label: {"latency_ms": [], "failures": []} for label in servers}
    for start in range(0, n, COLD_BLOCK):
        for label, srv in servers.items():
            got = measure_cold(srv, names[label][start:start + COLD_BLOCK])
            out[label]["latency_ms"] += got["latency_ms"]
            out[label]["failures"] += got["failures"]
    return out


# --- throughput -----------------------------------------------------------------------------

WARM_UP_MORE_S = 2
WARM_UP_ROUNDS = 5


def confine_invoker(shares: cpushare.CpuShares, node: FrazilServer, share: float) -> str:
    """The invoker's own processes (its server, launcher, zygote) into a cgroup capped at `share`
    of a core; the group. Its instances stay in their instance cgroups, each capped by its tier
    (cgroup v1 refuses a parent quota below a child's, so their scope cannot take `share`)."""
    count = sum(name.startswith("invoker-") for name in shares.groups)
    return str(shares.confine(f"invoker-{count + 1}", own_processes(node), share))


def own_processes(node: FrazilServer) -> list[int]:
    """A node's server and the helpers it started, not its instances (in their own cgroups)."""
    table = process_table()
    return [pid for pid in [node.pid, *descendants(node.pid, table)]
            if not (cpushare.cpu_cgroup(pid) or f"/{ROOT_NAME}/").startswith(f"/{ROOT_NAME}/")]


def instances_cpu_s(invokers: list[FrazilServer]) -> float:
    """CPU seconds the invokers' instances used so far (their scopes' cpuacct.usage)."""
    total = 0
    for node in invokers:
        try:
            total += int((cpushare.CPUACCT_ROOT / ROOT_NAME / scope_for(node.server.data_dir)
                          / "cpuacct.usage").read_text())
        except (OSError, ValueError):
            pass
    return total / 1e9


def wrk_all(gateways: list[FrazilServer], paths: list[str], connections: int, duration_s: float) -> dict:
    """wrk on every gateway at once, requests going round `paths`; summed."""
    def one(gateway: FrazilServer) -> dict:
        return wrk(gateway.url + paths[0], connections=connections, duration_s=duration_s, method="POST",
                   body=b'{"name":"bench"}', headers={**gateway.auth, "Content-Type": "application/json"},
                   paths=paths)
    with ThreadPoolExecutor(len(gateways)) as pool:
        runs = list(pool.map(one, gateways))
    return {"rps": sum(r["rps"] for r in runs), "requests": sum(r["requests"] for r in runs),
            "non_2xx": sum(r["non_2xx"] for r in runs), "socket_errors": sum(r["socket_errors"] for r in runs),
            "p50_ms": max(r["p50"] for r in runs), "p99_ms": max(r["p99"] for r in runs),
            "runs": [{k: v for k, v in r.items() if k != "raw"} for r in runs]}


def node_counts(cluster: Cluster) -> dict:
    """What each node's /metrics says now, for the throughput table: per invoker its calls, cold starts,
    instances created, instances held and tier slot lease transactions; per gateway the asks
    of an invoker that did not start the call (refusals), by reason."""
    invokers = []
    for node in cluster.invokers:
        m = node.metrics()
        invokers.append({"calls": metric_sum(m, "frazil_invocations_total"),
                         "cold": metric_sum(m, "frazil_cold_starts_total"),
                         "creates": metric_sum(m, "frazil_sandbox_creates_total"),
                         "instances": metric_sum(m, "frazil_instances"),
                         "leases": metric_sum(m, "frazil_slot_lease_transactions_total")})
    gateways = []
    for node in cluster.gateways:
        m = node.metrics()
        gateways.append({reason: metric_sum(m, "frazil_router_refusals_total", reason=reason)
                         for reason in ("full", "gone")})
    return {"invokers": invokers, "gateways": gateways}


def counts_delta(before: dict, after: dict) -> dict:
    """`after` less `before`, node by node; `instances` (a level, not a count) as it is after."""
    def one(b: dict, a: dict) -> dict:
        return {k: a[k] if k == "instances" else a[k] - b.get(k, 0) for k in a}
    return {role: [one(before[role][i] if i < len(before[role]) else {}, a) for i, a in enumerate(after[role])]
            for role in after}


def cold_starts(cluster: Cluster) -> float:
    return sum(node["cold"] for node in node_counts(cluster)["invokers"])


def warm_up(cluster: Cluster, paths: list[str], connections: int, seconds: int) -> None:
    """Load until the invokers hold what the load needs: `seconds` of it, then as much again
    (at most WARM_UP_MORE_S) until a round passes without a cold start (at most
    WARM_UP_ROUNDS). A version's instances grow to the most of its calls that ever ran at once,
    which keeps growing for a while; a round measured before would count those cold starts."""
    wrk_all(cluster.gateways, paths, connections, seconds)
    for _ in range(WARM_UP_ROUNDS):
        before = cold_starts(cluster)
        wrk_all(cluster.gateways, paths, connections, min(seconds, WARM_UP_MORE_S))
        if cold_starts(cluster) == before:
            return


def throughput_step(cluster: Cluster, shares: cpushare.CpuShares | None, report: Report, args, step: int) -> dict:
    names = [f"t{step}-{i:03d}" for i in range(args.functions)]
    at_start = node_counts(cluster)
    cluster.gateways[0].deploy_many(names, {"index.py": HELLO_PY})
    paths = [f"/v1/functions/{name}/invoke" for name in names]
    with KeepAliveClient(cluster.gateways[0].port) as client:  # each version's first (cold) start
        for name in names:
            status, body = client.roundtrip(cluster.gateways[0].invoke_request(name))
            if status != 200:
                raise RuntimeError(f"the first call of {name} failed: {status} {body[:300]!r}")
    connections = args.connections * step  # per gateway: each invoker offered the same load at every step
    warm_up(cluster, paths, connections, args.warmup_s)
    report.quiet(f"throughput with {step} invokers")
    groups = [g for name, g in shares.groups.items() if name.startswith("invoker-")] if shares else []
    before = {g: cpushare.throttling(g) for g in groups}
    gateway_pids = [g.pid for g in cluster.gateways]
    invoker_pids = [pid for node in cluster.invokers for pid in own_processes(node)]
    counts0 = node_counts(cluster)
    cpu0, inv0, inst0, t0 = (cpu_seconds(gateway_pids), cpu_seconds(invoker_pids), instances_cpu_s(cluster.invokers),
                             time.monotonic())
    rounds = [wrk_all(cluster.gateways, paths, connections, args.duration) for _ in range(args.rounds)]
    run = sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]  # the median round
    run["rounds_rps"] = [r["rps"] for r in rounds]
    elapsed = time.monotonic() - t0
    counts1 = node_counts(cluster)
    throttled = {}
    for g in groups:
        after = cpushare.throttling(g)
        periods = after.get("nr_periods", 0) - before[g].get("nr_periods", 0)
        throttled[g.name] = (after.get("nr_throttled", 0) - before[g].get("nr_throttled", 0)) / max(1, periods)
    run.update(invokers=step, connections=connections * len(cluster.gateways), throttled_share=throttled,
               gateway_cores=(cpu_seconds(gateway_pids) - cpu0) / elapsed,
               invoker_cores=(cpu_seconds(invoker_pids) - inv0) / elapsed,
               instance_cores=(instances_cpu_s(cluster.invokers) - inst0) / elapsed,
               counts=counts_delta(counts0, counts1), counts_warming=counts_delta(at_start, counts0))
    return run


# --- the run --------------------------------------------------------------------------------

def latency_tables(report: Report, warm: dict[str, list[float]], cold: dict[str, dict]) -> None:
    rows = {label: summarize(values) for label, values in warm.items()}
    report.data["warm"] = {label: {**row, "samples_ms": warm[label]} for label, row in rows.items()}
    e, c = rows["embedded"], rows["cluster"]
    report.table("warm sync invoke (ms; sequential, one keep-alive connection each, alternating blocks)",
                 ["", "p50", "p90", "p99"],
                 [["embedded", e["p50"], e["p90"], e["p99"]], ["cluster", c["p50"], c["p90"], c["p99"]],
                  ["cluster - embedded (target p50 <= 0.5)", *(c[p] - e[p] for p in ("p50", "p90", "p99"))],
                  ["cluster / embedded", *(c[p] / e[p] for p in ("p50", "p90", "p99"))]])
    cold_rows = {label: summarize(got["latency_ms"]) for label, got in cold.items()}
    report.data["cold"] = {label: {**cold_rows[label], **got} for label, got in cold.items()}
    report.table("cold sync invoke (ms; one call per new function, alternating blocks)",
                 ["", "n", "p50", "p90", "failed"],
                 [[label, row.get("n", 0), row.get("p50"), row.get("p90"), len(cold[label]["failures"])]
                  for label, row in cold_rows.items()]
                 + [["cluster / embedded", "", cold_rows["cluster"].get("p50", float("nan"))
                     / cold_rows["embedded"].get("p50", float("nan")), "", ""]])


def throughput_table(report: Report, steps: list[dict], share: float | None) -> None:
    report.data["throughput"] = steps
    base = steps[0]["rps"]
    rows = []
    for s in steps:
        n = s["invokers"]
        ratio = s["rps"] / base if base else float("nan")
        throttled = " ".join(f"{v:.0%}" for v in s["throttled_share"].values()) or "-"
        rounds = " ".join(f"{r:.0f}" for r in s.get("rounds_rps", []))
        rows.append([n, s.get("connections", ""), s["rps"], rounds, ratio, 0.8 * n, "yes" if ratio >= 0.8 * n else "no",
                     throttled, s["invoker_cores"], s["instance_cores"], s["gateway_cores"], s["p50_ms"], s["p99_ms"],
                     s["non_2xx"] + s["socket_errors"]])
    report.table("per throughput step, during the measured run: per invoker calls run, cold starts, instances "
                 "created, instances held after, slot lease transactions; per gateway refusals (full/gone); "
                 "before it (first calls and warm-up): cold starts and refusals",
                 ["N", "calls", "cold", "created", "instances", "leases", "refusals", "warming: cold",
                  "warming: refusals"],
                 [[s["invokers"], *(" ".join(f"{n[k]:g}" for n in s["counts"]["invokers"])
                                    for k in ("calls", "cold", "creates", "instances", "leases")),
                   " ".join(f"{g['full']:g}/{g['gone']:g}" for g in s["counts"]["gateways"]),
                   " ".join(f"{n['cold']:g}" for n in s["counts_warming"]["invokers"]),
                   " ".join(f"{g['full']:g}/{g['gone']:g}" for g in s["counts_warming"]["gateways"])]
                  for s in steps])
    cap = (f"each invoker capped at {share:g} core" if share else "invokers NOT capped (no cgroup v1 cpu here)")
    report.table(f"throughput with N invokers ({cap})",
                 ["N", "connections", "req/s", "rounds", "x N=1", "target", "met", "invokers throttled",
                  "invoker cores", "instance cores", "gateway cores", "p50 ms", "p99 ms", "errors"], rows)


def main(argv=None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="warm invokes per mode")
    parser.add_argument("--warmup", type=int, default=200, help="warm invokes per mode before counting")
    parser.add_argument("--cold", type=int, default=30, help="cold invokes per mode")
    parser.add_argument("--invokers", type=int, default=3, help="throughput with 1 .. this many invokers")
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--share", type=float, default=0.1,
                        help="each invoker's CPU cap, in cores (3 invokers then need ~1 core of this 2-core machine "
                             "for gateways, instances, NATS and PostgreSQL)")
    parser.add_argument("--weight", type=int, default=8192,
                        help="cpu.shares of the benchmark's cgroups (a task outside weighs 1024): the invokers get "
                             "their share and the gateways and wrk theirs ahead of other work on the machine")
    parser.add_argument("--functions", type=int, default=24, help="functions per throughput step")
    parser.add_argument("--connections", type=int, default=8,
                        help="wrk connections per gateway and per invoker (N invokers: N x this on each gateway)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="wrk runs per throughput step; the median's req/s and latency are reported (the CPU "
                             "columns and counts cover all of them)")
    parser.add_argument("--warmup-s", type=int, default=6,
                        help="wrk warm-up (whole seconds) before each throughput step, then more until no cold start")
    parser.add_argument("--json", type=Path, help="write the results here instead of bench/results/")
    args = parser.parse_args(argv)
    report, sandbox = start_run("cluster", args)
    why_not = cpushare.available()
    shares = None if why_not else cpushare.CpuShares(args.weight)
    if why_not:
        print(f"warning: {why_not}; the invokers are not capped", file=sys.stderr)
    cluster = Cluster(sandbox)
    embedded = FrazilServer(sandbox, env=ENV)
    report.data.update(cluster=cluster.name, database=cluster.database,
                       cgroup=str(shares.root) if shares else None)
    try:
        cluster.create()
        embedded.start(timeout_s=90)
        for _ in range(args.gateways):
            cluster.start("gateway")
        first = cluster.start("invoker")
        cluster.wait_for_invokers()
        servers = {"embedded": embedded, "cluster": cluster.gateways[0]}
        for srv in servers.values():
            srv.deploy("hello", {"index.py": HELLO_PY})
        report.quiet("warm invokes")
        warm = measure_warm(servers, args.n, args.warmup)
        report.quiet("cold invokes")
        cold = measure_cold_alternating(servers, args.cold)
        latency_tables(report, warm, cold)
        embedded.stop()

        steps = []
        report.data["confined"] = []
        if shares:
            # The drivers: gateways and this process (wrk is born in its cgroup), not capped.
            drivers = [os.getpid(), *(pid for g in cluster.gateways for pid in own_processes(g))]
            report.data["confined"] += [str(shares.confine("drivers", drivers, None)),
                                        confine_invoker(shares, first, args.share)]
        for step in range(1, args.invokers + 1):
            if step > 1:
                node = cluster.start("invoker")
                cluster.wait_for_invokers()
                if shares:
                    report.data["confined"].append(confine_invoker(shares, node, args.share))
            steps.append(throughput_step(cluster, shares, report, args, step))
        throughput_table(report, steps, args.share if shares else None)
        report.data["loadavg_at_end"] = list(os.getloadavg())
    finally:
        embedded.stop()
        cluster.close()
        if shares:
            shares.close()
    if args.json:
        report.data["markdown"] = "\n".join(report.tables)
        args.json.write_text(json.dumps(report.data, indent=2, default=str))
    else:
        report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
