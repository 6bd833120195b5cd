"""Where the server's time goes: py-spy on `frazil server` under wrk load, summarised.

For the bare route (`GET /healthz`, 16 connections) and the warm invoke route
(`POST /v1/functions/hello/invoke`, at 16 connections and at 1) it runs wrk while
`py-spy record --gil` samples the server (only samples that hold the GIL: the server's single
event-loop thread is the bottleneck), and reports
- CPU per request: server process (all threads) and instance processes, from /proc;
- each sample's time by component (attributed to the innermost frame that belongs to a
  known component: uvicorn, FastAPI/Starlette, the threadpool hand-off, frazil's invoke
  path, instance channel I/O, the record writer/DB, ...);
- inclusive shares of the frames that matter, and the hottest source lines.
`--cold` adds the server during cold invokes (new functions, one call each, sequential) and
the runtime's import profile (`python -X importtime` of the loop as an exec'd instance runs it).

    .venv/bin/python -m bench.profile_server [--sandbox auto|isolated|plain] [--duration 8] [--cold]

Throughput under py-spy (`--nonblocking`) is a little below the unprofiled figure.
"""
from __future__ import annotations

import linecache
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import base_parser, check_duration
from bench.functions import EVENT
from bench.invoke_latency import deploy_cold_set, deploy_hello, measure_cold, server_env, warm_up_wrk
from bench.machine import machine_info
from bench.paths import RESULTS_DIR
from bench.processes import OwnedProcess, install_signal_handlers
from bench.procfs import cpu_seconds
from bench.report import Report
from bench.server import FrazilServer, choose_sandbox
from bench.stats import summarize
from bench.wrk import wrk

PY_SPY = Path(sys.executable).parent / "py-spy"

# Work done on behalf of one owner, whatever library frame is innermost: (component, pattern
# on "func (path)"), checked against every frame of a sample, outermost first.
OWNERS = [
    ("frazil: async dispatcher passes (SQL queries: due, next_due_time)", r"frazil/scheduler/dispatcher\.py[:)]"),
    ("frazil: record writer (batched invocation records, SQL)", r"frazil/store/record_writer\.py[:)]"),
    # SQLAlchemy's async engine runs each statement in a greenlet, whose stack starts at the
    # statement: the caller is cut off. On the invoke path the record writer sends driver-level
    # SQL; Core statements are the dispatcher's selects (and a catalog refresh every 2 s).
    ("frazil: record writer (batched invocation records, SQL)", r"^Connection\.exec_driver_sql \("),
    ("SQLAlchemy Core statements (greenlet: caller cut off; dispatcher selects, catalog)",
     r"^(Connection\.execute|Connection\.scalar|Connection\.cursor|Cursor\._execute) \("),
    ("aiosqlite worker thread (SQLite itself, any query)", r"^_connection_worker_thread \("),
]
# (component, pattern on the frame's file). Otherwise a sample goes to the innermost frame
# that matches.
COMPONENTS = [
    ("frazil: instance channel I/O + protocol", r"frazil/(pool/instance|pool/output|runtimes/protocol)\.py"),
    ("frazil: pool + scheduler (acquire/release, admission)", r"frazil/(pool/pool|scheduler/)"),
    ("SQL on the event loop, caller cut off (aiosqlite hand-off, SQLAlchemy)",
     r"frazil/store/|sqlalchemy/|aiosqlite/|sqlite3/"),
    ("frazil: metrics (prometheus_client)", r"frazil/metrics\.py|prometheus_client/"),
    ("frazil: sandbox (create, specialize, cgroups, launcher wire)", r"frazil/sandbox/"),
    ("frazil: API handlers + deps (invoke, healthz, auth)", r"frazil/api/"),
    ("frazil: other", r"frazil/"),
    ("random ids / markers (secrets, os.urandom)", r"/random\.py|/secrets\.py|/uuid\.py"),
    ("threadpool hand-off (anyio, sync deps)", r"anyio/|starlette/concurrency\.py|/threading\.py|/queue\.py|"
                                               r"concurrent/futures/"),
    ("FastAPI/Starlette: routing, deps, middleware, responses", r"fastapi/|starlette/|pydantic"),
    ("uvicorn HTTP protocol (httptools callbacks)", r"uvicorn/"),
    ("asyncio (tasks, futures, timers)", r"/asyncio/"),
]
OTHER = "other"
# Frames every sample of a thread has (entry points): left out of the inclusive tables.
ROOT_FRAMES = (r"\((typer|click|uvicorn/(main|server|_compat)\.py|asyncio/runners\.py|frazil/cli/|threading\.py"
               r"|<string>|<frozen)|^<module>|^Thread\.|^ \(")


def frame_parts(frame: str) -> tuple[str, str, int]:
    """'func (path:line)' -> (func, path, line)."""
    m = re.match(r"(.*) \((.*):(\d+)\)$", frame)
    if not m:
        return frame, "", 0
    return m.group(1), m.group(2), int(m.group(3))


def component_of(frames: list[str]) -> str:
    for frame in frames:
        for name, pattern in OWNERS:
            if re.search(pattern, frame):
                return name
    for frame in reversed(frames):
        _, path, _ = frame_parts(frame)
        for name, pattern in COMPONENTS:
            if re.search(pattern, path):
                return name
    # The leaf is the event loop itself (uvloop is C: its time shows in Runner.run's frame).
    if frames and "Runner.run" in frames[-1]:
        return "event loop C code (uvloop, transports, httptools parser)"
    return OTHER


def analyse(raw: str) -> dict:
    total = 0
    by_component: Counter = Counter()
    inclusive: Counter = Counter()
    lines: Counter = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        by_component[component_of(frames)] += n
        seen = set()
        for frame in frames:
            func, path, _ = frame_parts(frame)
            key = f"{func} ({_short(path)})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
        func, path, lineno = frame_parts(frames[-1])
        lines[(func, path, lineno)] += n
    hot = []
    for (func, path, lineno), n in lines.most_common(25):
        code = linecache.getline(path, lineno).strip() if path else ""
        hot.append({"share": n / total, "where": f"{_short(path)}:{lineno} {func}", "code": code[:90]})
    return {"samples": total,
            "components": [{"component": k, "share": v / total} for k, v in by_component.most_common()],
            "inclusive": [{"frame": k, "share": v / total} for k, v in inclusive.most_common(60)],
            "hot_lines": hot}


def _short(path: str) -> str:
    if "/frazil/" in path and "site-packages/" not in path:  # this tree, or an exported ref
        return "frazil/" + path.rsplit("/frazil/", 1)[1]
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def profile_route(srv: FrazilServer, route: str, path: str, method: str, duration_s: float, rate: int,
                  connections: int, out_dir: Path) -> dict:
    headers = {**srv.auth, "Content-Type": "application/json"} if method == "POST" else None
    raw_path = out_dir / f"py-spy-{route}-c{connections}.txt"
    cmd = [str(PY_SPY), "record", "--pid", str(srv.pid), "--duration", f"{duration_s:g}", "--rate", str(rate),
           "--format", "raw", "--gil", "--nonblocking", "--full-filenames", "--output", str(raw_path)]
    instances, _ = srv.instance_processes()
    inst_pids = [p for pids in instances.values() for p in pids]
    server_cpu0, inst_cpu0 = cpu_seconds([srv.pid]), cpu_seconds(inst_pids)
    spy = OwnedProcess(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True), "py-spy")
    try:
        time.sleep(0.3)
        res = wrk(srv.url + path, connections=connections, duration_s=duration_s, method=method,
                  body=EVENT if method == "POST" else b"", headers=headers)
        spy.popen.wait(duration_s + 30)
    finally:
        spy.stop()
    server_cpu, inst_cpu = cpu_seconds([srv.pid]) - server_cpu0, cpu_seconds(inst_pids) - inst_cpu0
    requests = max(1, res["requests"])
    out = {"route": f"{route} c{connections}", "path": path, "connections": connections, "wrk": {k: res[k] for k in ("rps", "p50", "p99", "requests", "non_2xx")},
           "server_cpu_us_per_request": 1e6 * server_cpu / requests,
           "instances_cpu_us_per_request": 1e6 * inst_cpu / requests,
           "server_cpu_share_of_one_core": server_cpu / duration_s, "raw_file": str(raw_path)}
    out.update(analyse(raw_path.read_text()) if raw_path.exists() else {"samples": 0})
    return out


def profile_cold(srv: FrazilServer, n: int, rate: int, out_dir: Path) -> dict:
    """py-spy on the server while `n` new functions are invoked once each, sequentially."""
    names, _ = deploy_cold_set(srv, n, prefix="pcold")
    raw_path = out_dir / "py-spy-cold-c1.txt"
    cmd = [str(PY_SPY), "record", "--pid", str(srv.pid), "--duration", "120", "--rate", str(rate),
           "--format", "raw", "--gil", "--nonblocking", "--full-filenames", "--output", str(raw_path)]
    spy = OwnedProcess(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True), "py-spy")
    try:
        time.sleep(0.3)
        cpu0, t0 = cpu_seconds([srv.pid]), time.perf_counter()
        cold = measure_cold(srv, names)
        wall, cpu = time.perf_counter() - t0, cpu_seconds([srv.pid]) - cpu0
        spy.popen.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        spy.popen.wait(30)
    finally:
        spy.stop()
    lat = summarize(cold["latency_ms"])
    out = {"route": "cold c1", "path": "POST /v1/functions/{new function}/invoke", "connections": 1,
           "wrk": {"rps": n / wall, "p50": lat["p50"], "p99": lat["p99"], "requests": n, "non_2xx": 0},
           "server_cpu_us_per_request": 1e6 * cpu / n, "instances_cpu_us_per_request": float("nan"),
           "server_cpu_share_of_one_core": cpu / wall, "raw_file": str(raw_path)}
    out.update(analyse(raw_path.read_text()) if raw_path.exists() else {"samples": 0})
    return out


def import_profile() -> dict:
    """`python -X importtime -I -S -B loop.py` (as an instance starts it): top-level imports by
    cumulative time. The loop then fails on its missing channel (fd 3), after every import."""
    from frazil.runtimes import PYTHON as PY_RUNTIME, RUNTIMES_ROOT

    argv = PY_RUNTIME.argv(str(PY_RUNTIME.interpreter()), str(RUNTIMES_ROOT), 128)
    argv = argv[:1] + ["-X", "importtime"] + argv[1:]
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        runs.append((time.perf_counter() - t0) * 1000)
    top = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and len(m.group(3)) <= 1:  # top-level imports of the loop (and of the interpreter)
            top.append({"module": m.group(4), "cumulative_ms": int(m.group(2)) / 1000})
    top.sort(key=lambda x: -x["cumulative_ms"])
    bare = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(argv[:1] + ["-I", "-S", "-B", "-c", "pass"], timeout=30)
        bare.append((time.perf_counter() - t0) * 1000)
    return {"argv": argv, "top_imports": top[:12], "loop_to_exit_ms": sorted(runs)[2],
            "python_pass_ms": sorted(bare)[2]}


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.set_defaults(duration=8.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--cold", action="store_true",
                        help="also profile cold invokes (new functions, one call each) and the runtime's imports")
    parser.add_argument("--cold-functions", type=int, default=200, help="functions for the cold profile")
    args = parser.parse_args(argv)
    check_duration(args)
    if not PY_SPY.exists() and shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    install_signal_handlers()
    report = Report("profile_server", quiet_wait_s=args.quiet_wait)
    sandbox, note = choose_sandbox(args.sandbox)
    report.data.update(machine=machine_info(), sandbox=sandbox, sandbox_note=note, args=vars(args))
    print(f"# profile_server - sandbox: {sandbox} ({note})", flush=True)
    out_dir = RESULTS_DIR / "profiles"
    out_dir.mkdir(parents=True, exist_ok=True)
    with FrazilServer(sandbox, server_env(args.connections + args.cold_functions)) as srv:
        name = deploy_hello(srv)
        path = f"/v1/functions/{name}/invoke"
        warm_up_wrk(srv.url, path, {**srv.auth, "Content-Type": "application/json"}, args.connections)
        routes = []
        for route, p, method, c in (("healthz", "/healthz", "GET", args.connections),
                                    ("invoke", path, "POST", args.connections), ("invoke", path, "POST", 1)):
            report.quiet(f"profile {route} c{c}")
            routes.append(profile_route(srv, route, p, method, args.duration, args.rate, c, out_dir))
        if args.cold:
            report.quiet("profile cold invokes")
            routes.append(profile_cold(srv, args.cold_functions, args.rate, out_dir))
    report.data["routes"] = routes

    rows = [[r["route"], r["wrk"]["rps"], r["wrk"]["p50"], r["wrk"]["p99"], r["server_cpu_us_per_request"],
             r["instances_cpu_us_per_request"], r["server_cpu_share_of_one_core"]] for r in routes]
    report.table(f"Under wrk, py-spy attached (sandbox: {sandbox})",
                 ["route, wrk connections", "req/s", "p50 ms", "p99 ms", "server CPU µs/req", "instances CPU µs/req",
                  "server CPU (cores)"], rows)
    comps = {}
    for r in routes:
        for c in r.get("components", []):
            comps.setdefault(c["component"], {})[r["route"]] = c["share"]
    names = [r["route"] for r in routes]
    cpu = {r["route"]: r["server_cpu_us_per_request"] for r in routes}
    rows = sorted(([k, *(v.get(n, 0) * 100 for n in names), *(v.get(n, 0) * cpu[n] for n in names)]
                   for k, v in comps.items()), key=lambda row: -row[len(names) + 2])
    report.table("Server time by component (GIL-holding samples; % and ≈ µs of server CPU per request)",
                 ["component", *(f"{n} %" for n in names), *(f"{n} µs/req" for n in names)], rows)
    for inv in routes[1:]:
        report.table(f"{inv['route']}: inclusive share of the top frames", ["frame", "% of samples"],
                     [[x["frame"], x["share"] * 100] for x in inv.get("inclusive", [])
                      if not re.search(ROOT_FRAMES, x["frame"])][:25])
        report.table(f"{inv['route']}: hottest lines (self time, C calls land on their Python line)",
                     ["% samples", "where", "code"],
                     [[h["share"] * 100, h["where"], h["code"]] for h in inv["hot_lines"][:15]])
    if args.cold:
        imp = import_profile()
        report.data["imports"] = imp
        report.table("Instance start: the runtime loop's imports (python -X importtime)",
                     ["module (top level)", "cumulative ms"],
                     [[i["module"], i["cumulative_ms"]] for i in imp["top_imports"]]
                     + [["(loop.py run to its fd-3 error, wall, median of 5)", imp["loop_to_exit_ms"]],
                        ["(python -I -S -B -c pass, wall, median of 5)", imp["python_pass_ms"]]])
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
