"""Deploy times with dependency layers, and Node's invoke latency beside Python's (issue 5).

Measures, on one server:
- deploy time of a project with dependencies: the first deploy (its layer is built: pip or
  npm from the registry) and redeploys whose code changed but whose dependency manifest did
  not (the layer is reused), for the repo's examples/python-deps and examples/node-log4js;
- cold invoke latency (N functions with the same tiny bundle, each invoked once) and warm
  invoke latency (one keep-alive client, sequential) of the same hello function in Python
  and in Node, side by side.

    .venv/bin/python -m bench.deploy_and_node [--sandbox auto|isolated|plain] [--cold 30] [--redeploys 10]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import base_parser, start_run
from bench.client import KeepAliveClient, envelope_checker
from bench.functions import HELLO_PY
from bench.invoke_latency import LATENCY_HEADERS, latency_rows, measure_cold
from bench.paths import REPO
from bench.server import FrazilServer
from bench.stats import summarize
from frazil.testing import folder_files

HELLO_JS = "exports.main = async (event) => ({ hello: (event && event.name) || 'world' });\n"
PROJECTS = {"python3.11": REPO / "examples" / "python-deps", "nodejs20": REPO / "examples" / "node-log4js"}

def timed_deploy(srv: FrazilServer, name: str, files: dict, config: dict) -> float:
    started = time.perf_counter()
    srv.deploy(name, files, config)
    return time.perf_counter() - started


def measure_deploys(srv: FrazilServer, runtime: str, redeploys: int) -> dict:
    files = folder_files(PROJECTS[runtime])
    config = {"memory": 128, "runtime": runtime}
    if runtime == "nodejs20":
        config["handler"] = "cloud/index.main"
    name = f"deps-{runtime.replace('.', '')}"
    first = timed_deploy(srv, name, files, config)
    again = []
    for i in range(redeploys):
        # New code each time (a new bundle, a new version), the same dependency manifest.
        changed = dict(files, **{"frazil_bench_revision.txt": f"revision {i}\n".encode()})
        again.append(timed_deploy(srv, name, changed, config))
    body = srv.http.post(f"/v1/functions/{name}/invoke", content=b"{}").json()
    if not body.get("success"):
        raise RuntimeError(f"{name} does not work after its deploys: {body}")
    return {"first_s": first, "unchanged_s": again}


def measure_runtime(srv: FrazilServer, runtime: str, source: dict, cold_n: int, warm_n: int) -> dict:
    config = {"memory": 128, "runtime": runtime}
    prefix = "py" if runtime.startswith("python") else "js"
    names = [f"{prefix}-cold-{i}" for i in range(cold_n)]
    srv.deploy_many(names, source, config)
    cold = measure_cold(srv, names)
    srv.deploy(f"{prefix}-warm", source, config)
    request = srv.invoke_request(f"{prefix}-warm")
    with KeepAliveClient(srv.port) as client:
        client.timed(request, 200, envelope_checker(expect_cold=None))  # warm-up
        warm = client.timed(request, warm_n, envelope_checker(expect_cold=False))
    return {"cold_ms": cold["latency_ms"], "warm_ms": warm, "cold_failures": cold["failures"]}


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=30, help="cold samples per runtime")
    parser.add_argument("--warm", type=int, default=1000, help="warm samples per runtime")
    parser.add_argument("--redeploys", type=int, default=10, help="unchanged-manifest redeploys per project")
    args = parser.parse_args(argv)
    report, sandbox = start_run("deploy_and_node", args)
    env = {"FRAZIL_TIER_LIMIT_128": "1000", "FRAZIL_MAX_IDLE_INSTANCES": "2000"}
    with FrazilServer(sandbox, env) as srv:
        report.quiet("deploys")
        deploys = {rt: measure_deploys(srv, rt, args.redeploys) for rt in PROJECTS}
        report.quiet("invokes")
        latency = {rt: measure_runtime(srv, rt, src, args.cold, args.warm)
                   for rt, src in (("python3.11", {"index.py": HELLO_PY}), ("nodejs20", {"index.js": HELLO_JS}))}
    report.data.update(deploys=deploys, latency=latency)
    report.table("Deploy time over HTTP (dependency layer built once, then reused)",
                 ["project", "first deploy (layer built), s", "unchanged manifest: p50 s", "max s", "n"],
                 [[f"{PROJECTS[rt].name} ({rt})", d["first_s"], summarize(d["unchanged_s"])["p50"],
                   max(d["unchanged_s"]), len(d["unchanged_s"])] for rt, d in deploys.items()])
    rows = []
    for rt, d in latency.items():
        rows += latency_rows([(f"{rt} cold (first call of {len(d['cold_ms'])} functions)",
                               "POST /v1/functions/{name}/invoke", d["cold_ms"]),
                              (f"{rt} warm (1 client, sequential)", "POST /v1/functions/{name}/invoke", d["warm_ms"])])
    report.table(f"Python and Node invoke latency (sandbox: {sandbox})", LATENCY_HEADERS, rows)
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
