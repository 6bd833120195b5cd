"""Scheduling and fast cold starts: frazil against its baselines, in one run, same machine,
same method, reported as ratios against the targets.

Phases (each waits, bounded, for a quiet machine first):
1. process-start baselines: `.venv/bin/python -c pass` and `-I -S -c pass`, many runs of
   posix_spawn + waitpid (and hyperfine -N when installed, as a cross-check);
2. a fresh sandboxed interpreter per invocation: the platform's own sandbox API used
   exec-per-request - `make_sandbox(Settings(sandbox=S)).create()`, the Python runtime loop's
   hello/init, one invoke, then `destroy()` - for plain and (when it works here) isolated; and
   `unshare -m -u -i -p -n -f` + exec of `python -I -S -c pass` (namespaces only);
3. frazil warm invoke and bare `/healthz` p50/p99 (keep-alive client) and wrk at 1 and 16
   connections;
4. Google's functions-framework serving the same hello function without isolation
   (`--asgi`, and the default gunicorn/Flask mode), measured the same way;
5. cold starts over HTTP: N functions with the same tiny bundle, each invoked once; then the
   N idle warm instances' memory (PSS of each instance's processes, the server's growth, and
   `free -m` before/after), extrapolated to 24 GB;
6. the four targets as ratios from this run.

    .venv/bin/python -m bench.compare [--sandbox auto|isolated|plain] [--instances 500]
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import base_parser, start_run
from bench.client import envelope_checker
from bench.functions import EVENT, HELLO_PY
from bench.functions_framework import FunctionsFramework, ff_check, ff_version
from bench.invoke_latency import (LATENCY_HEADERS, THROUGHPUT_HEADERS, create_mean_ms, deploy_cold_set, deploy_hello,
                                  frazil_throughput, latency_rows, measure_cold, measure_throughput,
                                  measure_warm_and_bare, server_env, throughput_rows, warm_up_wrk)
from bench.metrics import metric_sum
from bench.paths import PYTHON
from bench.procfs import cgroup_cpu_stat, free_m, memory_cgroup_usage_kb, smaps_kb, throttle_summary, tree_kb
from bench.report import Report
from bench.server import FrazilServer
from bench.stats import percentile, summarize
from frazil.testing.processes import descendants

# What the plain sandbox gives a runtime; the spawn baselines get the same.
SPAWN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
GB24_MB = 24 * 1024

# --- 1. process-start baselines -------------------------------------------------------------


def spawn_wait_ms(argv: list[str], n: int, warmup: int = 5, env: dict | None = None) -> list[float]:
    """posix_spawn + waitpid, n times; wall time of each in ms (stdout/stderr to /dev/null)."""
    env = SPAWN_ENV if env is None else env
    actions = [(os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_RDWR, 0) for fd in (0, 1, 2)]
    out = []
    for i in range(warmup + n):
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        dt = (time.perf_counter_ns() - t0) / 1e6
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{argv} exited with {os.waitstatus_to_exitcode(status)}")
        if i >= warmup:
            out.append(dt)
    return out


def hyperfine_ms(argv: list[str], runs: int) -> list[float] | None:
    if shutil.which("hyperfine") is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".json", prefix="bench-hf-", delete=False) as f:
        path = f.name
    try:
        subprocess.run(["hyperfine", "-N", "--style", "none", "--warmup", "5", "--runs", str(runs),
                        "--export-json", path, " ".join(argv)],
                       check=True, capture_output=True, timeout=300, env={**os.environ, **SPAWN_ENV})
        with open(path) as f:
            return [t * 1000 for t in json.load(f)["results"][0]["times"]]
    finally:
        os.unlink(path)


def process_baselines(runs: int) -> dict:
    python = str(PYTHON)  # the project's venv interpreter, as a user would type it
    variants = {
        "venv python -c pass": [python, "-c", "pass"],
        "venv python -I -S -c pass": [python, "-I", "-S", "-c", "pass"],
    }
    out = {}
    for label, argv in variants.items():
        out[label] = {"argv": argv, "spawn_wait_ms": spawn_wait_ms(argv, runs), "hyperfine_ms": hyperfine_ms(argv, runs)}
    return out


# --- 2. a fresh sandboxed interpreter per invocation ---------------------------------------------


async def _instance_per_call(sandbox_name: str, n: int, options: dict) -> dict:
    """exec-per-request with the platform's own sandbox and runtime loop: for each request,
    create() a sandbox, wait for the runtime's hello, init (import the handler), invoke once;
    then destroy() it (timed apart)."""
    from frazil.pool.instance import InitFrame, Instance
    from frazil.runtimes import PYTHON as PY_RUNTIME
    from frazil.sandbox.base import SandboxSpec
    from frazil.sandbox.select import make_sandbox
    from frazil.settings import Settings
    from frazil.store.models import Access, FunctionVersion, VersionStatus

    work = Path(tempfile.mkdtemp(prefix="frazil-bench-sbx-"))
    code = work / "code"
    code.mkdir()
    (code / "index.py").write_text(HELLO_PY)
    for p in (work, code):
        p.chmod(0o755)
    (code / "index.py").chmod(0o644)
    known = {f.name for f in dataclasses.fields(Settings)}
    settings = Settings(sandbox=sandbox_name, data_dir=work / "data",
                        **{k: v for k, v in options.items() if k in known})
    settings.data_dir.mkdir()
    version = FunctionVersion(function="bench", number=1, status=VersionStatus.READY, runtime=PY_RUNTIME.name,
                              handler="index.main", memory_mb=128, timeout_s=10.0, env={}, resident=0,
                              access=Access.ADMIN, http=False, bundle_hash="0" * 64, bundle_bytes=0, layer_key=None,
                              created_at=time.time())
    sandbox = make_sandbox(settings)
    await sandbox.start()
    create_to_result, destroy, sandbox_ms, create_ms, start_ms, invoke_ms = [], [], [], [], [], []
    paths: Counter = Counter()
    try:
        for i in range(n + 2):
            spec = SandboxSpec(instance_id=f"bench{i:05d}", runtime=PY_RUNTIME, code_dir=code, memory_mb=128,
                               cpu=0.5, tmp_mb=64, pids_max=64)
            t0 = time.perf_counter_ns()
            init = InitFrame.make(version, sandbox.runtime_paths(spec), max_result_bytes=6 * 1024 * 1024,
                                  platform_env={})
            proc = await sandbox.create(spec, init.frame)
            ta = time.perf_counter_ns()
            instance = Instance(version, proc, init, log_cap=65536)
            try:
                await instance.start(init_timeout_s=10)
                instance.lease()
                tb = time.perf_counter_ns()
                outcome = await instance.invoke(f"inv{i}", EVENT, cold=True, timeout_s=10)
                t1 = time.perf_counter_ns()
            finally:
                t2 = time.perf_counter_ns()
                await instance.destroy()
                t3 = time.perf_counter_ns()
            if not outcome.ok:
                raise RuntimeError(f"per-call invoke failed in the {sandbox_name} sandbox: {outcome.error}")
            if i >= 2:  # the first two warm the page cache and the launcher
                create_to_result.append((t1 - t0) / 1e6)
                create_ms.append((ta - t0) / 1e6)
                start_ms.append((tb - ta) / 1e6)
                invoke_ms.append((t1 - tb) / 1e6)
                destroy.append((t3 - t2) / 1e6)
                if "create_ms" in proc.stats:
                    sandbox_ms.append(proc.stats["create_ms"])
                paths[proc.stats.get("path", "exec")] += 1
    finally:
        await sandbox.close()
        shutil.rmtree(work, ignore_errors=True)
    return {"create_to_result_ms": create_to_result, "destroy_ms": destroy, "sandbox_create_ms": sandbox_ms,
            "create_ms": create_ms, "start_ms": start_ms, "invoke_ms": invoke_ms, "paths": dict(paths),
            "settings": {k: v for k, v in options.items() if k in known}}


# (label, sandbox, Settings overrides): exec'ing a fresh interpreter per call is the
# baseline asked for; the zygote row shows the isolated sandbox's own fast path, per call.
# No instances built ahead of time in either isolated row (`sandbox_prebuilt` 0: the sandbox
# would otherwise keep the shape it sees ready, and later creates would take that path).
PER_CALL = [
    ("plain sandbox, exec", "plain", {}),
    ("isolated sandbox, exec", "isolated", {"sandbox_zygote": False, "sandbox_prebuilt": 0}),
    ("isolated sandbox, zygote fork", "isolated", {"sandbox_zygote": True, "sandbox_prebuilt": 0}),
]


def instance_per_call(sandbox_name: str, n: int, options: dict) -> dict:
    try:
        return asyncio.run(_instance_per_call(sandbox_name, n, options))
    except Exception as exc:  # e.g. the isolated sandbox is not usable here
        print(f"note: per-call {sandbox_name} sandbox not measured: {exc}", file=sys.stderr)
        return {"error": f"{type(exc).__name__}: {exc}"}


def unshare_exec(n: int) -> dict:
    if shutil.which("unshare") is None:
        return {"error": "unshare is not installed"}
    real_python = os.path.realpath(PYTHON)
    argv = [shutil.which("unshare"), "-m", "-u", "-i", "-p", "-n", "-f", "--", real_python, "-I", "-S", "-c", "pass"]
    try:
        return {"argv": argv, "spawn_wait_ms": spawn_wait_ms(argv, n)}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


# --- 4. functions-framework ----------------------------------------------------------------------


def measure_ff(asgi: bool, work: Path, n: int, warmup: int, duration_s: float) -> dict:
    with FunctionsFramework(work, asgi) as ff:
        lat = measure_warm_and_bare(ff.port, ff.invoke_request(), n, warmup, ff_check, ff_check, bare_path=None)
        headers = {"Content-Type": "application/json"}
        warm_up_wrk(ff.url, "/", headers)
        runs = measure_throughput(ff.url, "/", headers, duration_s, bare_path=None,
                                  cpu_groups=lambda: {"server": [ff.owned.popen.pid, *descendants(ff.owned.popen.pid)]})
        return {"argv": ff.argv, "warm_ms": lat["warm_ms"], "runs": runs}


# --- 5. cold starts over HTTP and idle instance memory -------------------------------------------


def cold_and_memory(sandbox: str, n: int, report: Report) -> dict:
    with FrazilServer(sandbox, server_env(n)) as srv:
        names, deploy_s = deploy_cold_set(srv, n)
        print(f"deployed {n} functions in {deploy_s:.1f} s", flush=True)
        time.sleep(1.0)
        _, others_before = srv.instance_processes()
        before = {"free_m": free_m(), "server_pss_kb": smaps_kb(srv.pid), "server_rss_kb": smaps_kb(srv.pid, "Rss"),
                  "helpers_pss_kb": tree_kb(others_before)}
        report.quiet("cold invokes over HTTP")
        cold = measure_cold(srv, names)
        create_ms = create_mean_ms(srv.metrics())
        deadline = time.monotonic() + 30
        idle = 0.0
        while time.monotonic() < deadline:
            idle = metric_sum(srv.metrics(), "frazil_instances", state="idle")
            if idle >= n:
                break
            time.sleep(0.2)
        time.sleep(2.0)  # let the record writer and the allocator settle
        instances, others = srv.instance_processes()
        per_instance = []
        for root, pids in instances.items():
            per_instance.append({"pid": root, "pids": len(pids), "pss_kb": tree_kb(pids),
                                 "rss_kb": tree_kb(pids, "Rss"), "cgroup_kb": memory_cgroup_usage_kb(root),
                                 "cpu_stat": cgroup_cpu_stat(root)})
        after = {"free_m": free_m(), "server_pss_kb": smaps_kb(srv.pid), "server_rss_kb": smaps_kb(srv.pid, "Rss"),
                 "helpers_pss_kb": tree_kb(others), "idle_gauge": idle, "instances_found": len(instances)}
    return {"cold": cold, "deploy_s": deploy_s, "sandbox_create_mean_ms": create_ms, "before": before,
            "after": after, "instances": per_instance}


# --- the run -------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500,
                        help="functions invoked once each: the cold samples and the idle instances measured")
    parser.add_argument("--spawn-runs", type=int, default=200, help="runs of each process-start baseline")
    parser.add_argument("--sandbox-runs", type=int, default=50, help="runs of each per-call sandbox baseline")
    parser.add_argument("--warm", type=int, default=2000, help="sequential warm requests timed per server")
    parser.add_argument("--warmup", type=int, default=300, help="untimed warm-up requests per route")
    args = parser.parse_args(argv)
    report, sandbox = start_run("compare", args, functions_framework=ff_version())
    try:
        run_phases(report, sandbox, args)
    except BaseException as exc:
        report.data["error"] = f"{type(exc).__name__}: {exc}"
        report.save()  # what was measured so far
        raise
    print_report(report, sandbox, args)
    report.save()
    return 0


def run_phases(report: Report, sandbox: str, args) -> None:
    d = report.data
    report.quiet("process-start baselines")
    print("1. process-start baselines", flush=True)
    d["spawn"] = process_baselines(args.spawn_runs)

    report.quiet("per-call sandboxes")
    print("2. a fresh sandboxed interpreter per invocation", flush=True)
    d["per_call"] = {label: instance_per_call(name, args.sandbox_runs, options) for label, name, options in PER_CALL}
    d["unshare"] = unshare_exec(args.sandbox_runs)

    print(f"3. frazil warm path ({sandbox})", flush=True)
    with FrazilServer(sandbox, server_env(16)) as srv:
        name = deploy_hello(srv)
        report.quiet("frazil warm latency")
        d["frazil_warm"] = measure_warm_and_bare(srv.port, srv.invoke_request(name), args.warm, args.warmup,
                                                 envelope_checker(expect_cold=False), envelope_checker(None))
        report.quiet("frazil wrk")
        d["frazil_wrk"] = frazil_throughput(srv, name, args.duration)

    print("4. functions-framework", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-ff-"))
    try:
        for asgi in (True, False):
            label = "ff --asgi" if asgi else "ff default"
            report.quiet(label)
            try:
                d[label] = measure_ff(asgi, work, args.warm, args.warmup, args.duration)
            except Exception as exc:
                print(f"note: {label} not measured: {exc}", file=sys.stderr)
                d[label] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"5. cold starts over HTTP and {args.instances} idle instances ({sandbox})", flush=True)
    d["cold_memory"] = cold_and_memory(sandbox, args.instances, report)


def print_report(report: Report, sandbox: str, args) -> None:
    d = report.data
    cm = d["cold_memory"]
    cold = summarize(cm["cold"]["latency_ms"])

    rows = []
    for label, res in d["spawn"].items():
        rows.append([label, "posix_spawn + waitpid", *_lat(res["spawn_wait_ms"])])
        if res.get("hyperfine_ms"):
            rows.append([label, "hyperfine -N", *_lat(res["hyperfine_ms"])])
    for label, res in d["per_call"].items():
        if "error" in res:
            rows.append([f"fresh instance per call, {label}", res["error"][:60], None, None, None, None])
            continue
        made = ", ".join(f"{k} {v}" for k, v in res.get("paths", {}).items())
        rows.append([f"fresh instance per call, {label} ({made})", "create+hello+init+invoke",
                     *_lat(res["create_to_result_ms"])])
        rows.append([f"  of which create() ({label})", "sandbox.create()", *_lat(res["create_ms"])])
        rows.append([f"  of which hello + init ({label})", "interpreter start, loop imports, handler import",
                     *_lat(res["start_ms"])])
        rows.append([f"  of which the invoke ({label})", "one invoke frame round trip", *_lat(res["invoke_ms"])])
        rows.append([f"  ... then destroy ({label})", "destroy()", *_lat(res["destroy_ms"])])
    if "error" in d["unshare"]:
        rows.append(["unshare -m -u -i -p -n -f + python -I -S -c pass", d["unshare"]["error"][:60], None, None, None,
                     None])
    else:
        rows.append(["unshare -m -u -i -p -n -f + python -I -S -c pass", "posix_spawn + waitpid",
                     *_lat(d["unshare"]["spawn_wait_ms"])])
    rows.append([f"frazil cold invoke over HTTP ({sandbox}, {len(cm['cold']['latency_ms'])} functions, "
                 f"{len(cm['cold']['failures'])} failed)",
                 "POST invoke, keep-alive", *_lat(cm["cold"]["latency_ms"])])
    report.table("Cold start: frazil over HTTP vs starting a process", ["what", "method", "n", "p50 ms", "p99 ms",
                                                                         "mean ms"], rows)

    fw = d["frazil_warm"]
    lat = [(f"frazil warm invoke ({sandbox})", "POST /v1/functions/hello/invoke", fw["warm_ms"]),
           ("frazil bare round trip", "GET /healthz", fw["bare_ms"])]
    for label in ("ff --asgi", "ff default"):
        if "warm_ms" in d[label]:
            lat.append((f"functions-framework {label[3:]}", "POST /", d[label]["warm_ms"]))
    report.table("Warm invoke latency, 1 client, sequential, keep-alive", LATENCY_HEADERS, latency_rows(lat))

    tp = throughput_rows(f"frazil ({sandbox})", d["frazil_wrk"]["runs"])
    for label in ("ff --asgi", "ff default"):
        if "runs" in d[label]:
            tp += throughput_rows(f"functions-framework {label[3:]}", d[label]["runs"])
    report.table(f"Throughput, wrk {args.duration:g} s per run (same settings for every server)",
                 THROUGHPUT_HEADERS, tp)

    n = len(cm["instances"])
    pss = [i["pss_kb"] / 1024 for i in cm["instances"]]
    rss = [i["rss_kb"] / 1024 for i in cm["instances"]]
    cg = [i["cgroup_kb"] / 1024 for i in cm["instances"] if i["cgroup_kb"] is not None]
    b, a = cm["before"], cm["after"]
    used_delta = a["free_m"]["used"] - b["free_m"]["used"]
    server_delta_mb = (a["server_pss_kb"] - b["server_pss_kb"]) / 1024
    pss_mean = sum(pss) / n if n else float("nan")
    all_in = used_delta / n if n else float("nan")
    mem_rows = [
        ["idle instances (gauge / processes found)", f"{a['idle_gauge']:g} / {n}"],
        ["PSS per instance, mean MB (its processes)", pss_mean],
        ["PSS per instance, p50 / max MB", f"{percentile(pss, 50):.2f} / {max(pss) if pss else float('nan'):.2f}"],
        ["RSS per instance, mean MB", sum(rss) / n if n else None],
        ["memory cgroup usage per instance, mean MB", sum(cg) / len(cg) if cg else "-"],
        ["server PSS before / after MB", f"{b['server_pss_kb'] / 1024:.1f} / {a['server_pss_kb'] / 1024:.1f}"],
        ["server growth per instance MB", server_delta_mb / n if n else None],
        ["helper processes (launcher) PSS before / after MB",
         f"{b['helpers_pss_kb'] / 1024:.1f} / {a['helpers_pss_kb'] / 1024:.1f}"],
        ["free -m used before / after MB", f"{b['free_m']['used']} / {a['free_m']['used']}"],
        ["free -m available before / after MB", f"{b['free_m']['available']} / {a['free_m']['available']}"],
        ["machine memory per instance, all-in MB (Δ used / n)", all_in],
        ["idle instances in 24 GB by PSS", GB24_MB / pss_mean if n else None],
        ["idle instances in 24 GB all-in (Δ used)", GB24_MB / all_in if n and all_in > 0 else None],
    ]
    thr = throttle_summary([i.get("cpu_stat") for i in cm["instances"]])
    if thr["cgroups"]:
        mem_rows.append(["instances their CPU quota throttled (start + 1 invoke; cpu.stat)",
                         f"{thr['throttled']} / {thr['cgroups']}"])
        mem_rows.append(["  mean throttled time of those, ms", thr["mean_throttled_ms"]])
    report.table(f"Memory of {n} idle warm instances ({sandbox})", ["what", "value"], mem_rows)

    spawn = d["spawn"]
    py = summarize(spawn["venv python -c pass"]["spawn_wait_ms"])
    py_is = summarize(spawn["venv python -I -S -c pass"]["spawn_wait_ms"])
    warm = summarize(fw["warm_ms"])
    bare = summarize(fw["bare_ms"])
    rps16 = next(r["rps"] for r in d["frazil_wrk"]["runs"] if r["route"] == "invoke" and r["connections"] == 16)
    ff_rps16 = next((r["rps"] for r in d["ff --asgi"].get("runs", []) if r["connections"] == 16), float("nan"))
    fits_pss = GB24_MB / pss_mean if n else float("nan")
    fits_all = GB24_MB / all_in if n and all_in > 0 else float("nan")
    targets = [
        ["cold p50 over HTTP / `.venv/bin/python -c pass` p50", f"{cold['p50']:.2f} / {py['p50']:.2f} ms",
         cold["p50"] / py["p50"], "<= 0.5x", _ok(cold["p50"] / py["p50"] <= 0.5)],
        ["  (stricter) cold p50 / `python -I -S -c pass` p50", f"{cold['p50']:.2f} / {py_is['p50']:.2f} ms",
         cold["p50"] / py_is["p50"], "<= 0.5x", _ok(cold["p50"] / py_is["p50"] <= 0.5)],
        ["warm p50 - bare /healthz p50 (ms)", f"{warm['p50']:.3f} - {bare['p50']:.3f} ms", warm["p50"] - bare["p50"],
         "<= 0.5 ms", _ok(warm["p50"] - bare["p50"] <= 0.5)],
        ["warm req/s at 16 clients / functions-framework --asgi", f"{rps16:,.0f} / {ff_rps16:,.0f}",
         rps16 / ff_rps16, ">= 1.0x", _ok(rps16 / ff_rps16 >= 1.0)],
        ["idle instances in 24 GB (all-in: machine Δ used)", f"24576 MB / {all_in:.2f} MB", fits_all, ">= 1000",
         _ok(fits_all >= 1000)],
        ["  idle instances in 24 GB (instance PSS only)", f"24576 MB / {pss_mean:.2f} MB", fits_pss, ">= 1000",
         _ok(fits_pss >= 1000)],
    ]
    d["targets"] = [dict(zip(["target", "figures", "value", "goal", "met"], t)) for t in targets]
    report.table(f"Targets, from this run (sandbox: {sandbox})", ["target", "figures", "value", "goal", "met"],
                 targets)


def _lat(values: list[float]) -> list:
    s = summarize(values)
    return [s["n"], s["p50"], s["p99"], s["mean"]]


def _ok(flag: bool) -> str:
    return "yes" if flag else "**no**"


if __name__ == "__main__":
    sys.exit(main())
