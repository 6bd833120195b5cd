"""Cold starts of functions that import real dependencies (issue 15): numpy, pandas and Pillow,
each over HTTP on the platform, beside what the same imports cost outside it, in one run.

    .venv/bin/python -m bench.dep_cold [--sandbox auto|isolated|plain] [--functions 15] [--runs 20]
    .venv/bin/python -m bench.dep_cold --smoke   # a tiny local wheel instead of PyPI (tests/bench)

Two servers side by side, each deploying the same functions (wheels from PyPI; each builds
the layer once, by a real deploy): "layer ahead" (FRAZIL_SANDBOX_LAYER_PREBUILT_MB at its
default: a layer's cold start leaves a ready instance that imported its packages, see
frazil/sandbox/layer_ready.py) and "plain path" (0: a zygote or pre-built generic instance,
which imports at init). For each package:
- "cold invoke": `--functions` distinct functions with the same bundle (`requirements.txt`
  naming the package; the handler imports it at module level), each invoked once, in turn,
  spaced: on the "layer ahead" server each call first waits (untimed, bounded) until an
  instance that imported the layer is ready and done importing (blocked reading its go pipe) -
  the first call of a layer finds none and takes the plain path. Each row says which creation paths served it (`frazil_sandbox_creates`).
  Every envelope must say cold;
- "python -c 'import X'": posix_spawn + waitpid of the runtime's interpreter, `-I -S -B`, with
  the very layer the server built on sys.path, `--runs` times: the cost of the imports in a
  fresh process, with no platform around it;
- "fork of an interpreter that imported the layer": a process that has imported every
  top-level name of the layer (`frazil.sandbox.helper.toplevel`, from the distributions' metadata)
  forks `--runs` children that exit at once (fork + waitpid): the floor of a cold start from a
  dependency-aware zygote (no sandbox, no hand-over, no HTTP). The same process reports what
  such a zygote would hold (RSS, PSS) and whether the imports left anything that makes a
  fork unsafe (`frazil.sandbox.helper.fork_safety`: an import that raised, threads, open
  descriptors; it stops at the first unfit package, so the memory is then of a part).
Also the memory (RSS, PSS, cgroup charge) of the ready instances that imported a layer.
Tiers: functions run in the 256 MB tier (pandas needs more than 128 MB).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import base_parser, start_run
from bench.client import KeepAliveClient, envelope_checker
from bench.compare import SPAWN_ENV, spawn_wait_ms
from bench.invoke_latency import LATENCY_HEADERS, latency_rows
from bench.metrics import metric_sum
from bench.procfs import is_spare_instance, memory_cgroup_usage_kb, smaps_kb
from bench.report import Report
from bench.server import FrazilServer
from bench.stats import summarize
from frazil.sandbox.helper.toplevel import top_level_names
from frazil.runtimes import PYTHON
from frazil.sandbox.launcher_client import PACKAGE_PARENT
from frazil.settings import Settings
from frazil.testing.processes import direct_children, process_table
from frazil.testing.wheels import make_wheel

# package (as requirements.txt names it) -> the module its handler imports
PACKAGES = {"numpy": "numpy", "pandas": "pandas", "Pillow": "PIL.Image"}
SMOKE_WHEEL = "wheels/benchtiny-1.0-py3-none-any.whl"
SMOKE_PACKAGES = {f"./{SMOKE_WHEEL}": "benchtiny"}
CONFIG = {"memory": 256, "runtime": "python3.11"}
LAYER_SETTING = Settings.env_name("sandbox_layer_prebuilt_mb")
LAYER_VARIANT, PLAIN_VARIANT = "layer ahead", "plain path"
VARIANTS = {LAYER_VARIANT: str(Settings.model_fields["sandbox_layer_prebuilt_mb"].default), PLAIN_VARIANT: "0"}
DEPLOY_ATTEMPTS = 5
LAYER_READY_WAIT_S = 120.0  # before each cold start on the layer server: its ready instance imports in the background
# Idle instances go after 2 minutes (pandas ones are big); that is also how long an unused
# layer's ready instance is kept, longer than the waits between a layer's cold starts.
ENV = {"FRAZIL_TIER_LIMIT_256": "200", "FRAZIL_KEEP_ALIVE_S": "120"}

HANDLER = """import {module}


def main(event, context):
    return {{"module": {module!r}}}
"""

# Run in a fresh interpreter (-I -S -B); argv: frazil's parent folder, the layer, runs, the names.
PROBE = r"""
import gc, json, os, sys, threading, time
root, layer, runs, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
sys.path.insert(0, root)
from frazil.sandbox.helper.fork_safety import import_checked
sys.path.insert(0, layer)
t0 = time.perf_counter()
verdict = import_checked(names)
import_ms = (time.perf_counter() - t0) * 1000
gc.collect(); gc.freeze()
def rollup(field):
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
out = {"import_ms": import_ms, "imported": verdict.imported, "unfit": verdict.unfit,
       "tasks": len(os.listdir("/proc/self/task")), "python_threads": threading.active_count(),
       "rss_kb": rollup("Rss"), "pss_kb": rollup("Pss"), "fork_ms": []}
for _ in range(runs):
    t = time.perf_counter_ns()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    out["fork_ms"].append((time.perf_counter_ns() - t) / 1e6)
print(json.dumps(out))
"""


def bundle(requirement: str, module: str, smoke: bool) -> dict:
    files = {"index.py": HANDLER.format(module=module), "requirements.txt": requirement + "\n"}
    if smoke:  # a package of a few modules, installed from the bundle: no registry needed
        files[SMOKE_WHEEL] = make_wheel("benchtiny", files={
            "benchtiny/__init__.py": "from benchtiny import a, b\nVALUE = a.X + b.Y\n",
            "benchtiny/a.py": "X = sum(range(1000))\n", "benchtiny/b.py": "import json\nY = len(json.dumps([1]))\n"})
    return files


def find_layer(data_dir: Path, module: str) -> Path:
    """The layer the server built that provides `module`'s top-level package."""
    top = module.split(".")[0]
    for layer in sorted((data_dir / "layers").iterdir()):
        if layer.is_dir() and not layer.name.startswith(".") and top in top_level_names(layer):
            return layer
    raise RuntimeError(f"no layer under {data_dir / 'layers'} provides {top}")


def measure_outside(layer: Path, module: str, runs: int) -> dict:
    interpreter = str(PYTHON.interpreter())
    names = top_level_names(layer)
    script = f"import sys; sys.path.insert(0, {str(layer)!r}); import {module}"
    fresh = spawn_wait_ms([interpreter, "-I", "-S", "-B", "-c", script], runs, warmup=2)
    done = subprocess.run([interpreter, "-I", "-S", "-B", "-c", PROBE, PACKAGE_PARENT, str(layer), str(runs),
                           json.dumps(names)],
                          capture_output=True, text=True, timeout=300, env=SPAWN_ENV, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise RuntimeError(f"importing the layer {layer.name} failed: {done.stderr[-2000:]}")
    return {"top_level": names, "python_c_ms": fresh, "zygote_probe": json.loads(done.stdout)}


def deploy_building(srv: FrazilServer, names: list[str], files: dict) -> None:
    """Deploy `names`; the first deploy builds the layer (pip from PyPI), which on a busy
    machine may outlast the client's timeout: the server goes on building, and a deploy
    again waits for that build and reuses its layer."""
    for attempt in range(DEPLOY_ATTEMPTS):
        try:
            srv.deploy(names[0], files, CONFIG)
            break
        except httpx.TimeoutException:
            print(f"deploying {names[0]} timed out (attempt {attempt + 1}); the layer is still building",
                  file=sys.stderr, flush=True)
    else:
        raise RuntimeError(f"the layer of {names[0]} was not built after {DEPLOY_ATTEMPTS} deploys")
    srv.deploy_many(names, files, CONFIG)


def cold_spaced(srv: FrazilServer, names: list[str], before_each) -> dict:
    """Each function invoked once, in turn, each on a new connection (a wait between calls may
    outlast the server's keep-alive), timed from the request's send to the whole answer; every
    envelope must say cold. `before_each()` runs untimed before each call but the first (the
    layer's first cold start is the one that leaves its ready instance: none to wait for)."""
    latencies, paths = [], []
    for index, name in enumerate(names):
        if index:
            before_each()
        created = creates_by_path(srv)
        request = srv.invoke_request(name)
        with KeepAliveClient(srv.port) as client:
            t0 = time.perf_counter_ns()
            status, body = client.roundtrip(request)
            elapsed = (time.perf_counter_ns() - t0) / 1e6
        envelope_checker(expect_cold=True)(status, body)
        latencies.append(elapsed)
        after = creates_by_path(srv)
        paths.append(next((p for p in after if after[p] > created.get(p, 0)), "?"))
    return {"latency_ms": latencies, "paths": paths}


def creates_by_path(srv: FrazilServer) -> dict[str, float]:
    return {path: metric_sum(srv.metrics(), "frazil_sandbox_creates_total", path=path)
            for path in ("layer", "prebuilt", "zygote", "exec")}


def layer_ready(srv: FrazilServer, timeout_s: float = LAYER_READY_WAIT_S) -> None:
    """Wait (bounded) until the server has an instance that imported a layer ahead and is done
    importing: the pool lists one as soon as it has its layers, while its imports still run
    (at the lowest CPU weight), and a cold start that takes it then waits for the rest."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if metric_sum(srv.metrics(), "frazil_sandbox_layer_ready_instances") >= 1 and any(
                waiting_for_code(pid) for pid in layer_instances(srv)):
            return
        time.sleep(0.05)


def waiting_for_code(pid: int) -> bool:
    """Blocked reading its go pipe (fd 4, zygote_child.await_go): its layers are imported.
    True when the kernel does not say (no /proc/PID/syscall): then the metric alone is waited for."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
    except OSError:
        return True
    return len(fields) > 1 and fields[0] == "0" and int(fields[1], 16) == 4  # read(4, ...)


def layer_instances(srv: FrazilServer) -> list[int]:
    """The server's ready instances that have a layer mounted."""
    pids = []
    for pid in direct_children(srv.pid, process_table()):
        if not is_spare_instance(pid):
            continue
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                if any(line.split()[4] == "/layers/0" for line in f):
                    pids.append(pid)
        except OSError:
            continue
    return pids


def layer_instances_memory(srv: FrazilServer) -> list[dict]:
    """RSS, PSS and cgroup charge of the server's ready instances that have a layer mounted."""
    return [{"pid": pid, "rss_kb": smaps_kb(pid, "Rss"), "pss_kb": smaps_kb(pid, "Pss"),
             "cgroup_kb": memory_cgroup_usage_kb(pid)} for pid in layer_instances(srv)]


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=15, help="cold invokes (distinct functions) per package")
    parser.add_argument("--runs", type=int, default=20, help="spawns and forks per package, outside the platform")
    parser.add_argument("--smoke", action="store_true", help="a tiny local wheel instead of numpy/pandas/Pillow")
    parser.add_argument("--json", type=Path, help="write the results here instead of bench/results/")
    args = parser.parse_args(argv)
    report, sandbox = start_run("dep_cold", args, load_before=os.getloadavg())
    packages = SMOKE_PACKAGES if args.smoke else PACKAGES
    results = {}
    with contextlib.ExitStack() as stack:
        servers = {variant: stack.enter_context(FrazilServer(sandbox, {**ENV, LAYER_SETTING: mb}))
                   for variant, mb in VARIANTS.items()}
        for requirement, module in packages.items():
            label = module.split(".")[0]
            names = [f"dep-{label.lower()}-{i}" for i in range(args.functions)]
            result = results[label] = {}
            for variant, srv in servers.items():
                deploy_building(srv, names, bundle(requirement, module, args.smoke))
                report.quiet(f"cold invokes of {label}, {variant}")
                wait = (lambda srv=srv: layer_ready(srv)) if variant == LAYER_VARIANT else (lambda: None)
                result[variant] = cold_spaced(srv, names, wait)
                if variant == LAYER_VARIANT:
                    layer_ready(srv)
                    result["layer_instances"] = layer_instances_memory(srv)
            report.quiet(f"{label} outside the platform")
            result.update(measure_outside(find_layer(servers[PLAIN_VARIANT].server.data_dir, module), module,
                                          args.runs))
    report.data.update(results=results, load_after=os.getloadavg())
    print_tables(report, sandbox, results)
    if args.json is not None:
        report.data["markdown"] = "\n".join(report.tables)
        args.json.write_text(json.dumps(report.data, indent=1, default=str))
    else:
        report.save()
    return 0


def print_tables(report: Report, sandbox: str, results: dict) -> None:
    rows = []
    for label, r in results.items():
        rows += latency_rows([
            (f"{label}: cold invoke, layer imported ahead ({served(r[LAYER_VARIANT])})",
             "POST /v1/functions/{name}/invoke", r[LAYER_VARIANT]["latency_ms"]),
            (f"{label}: cold invoke, plain path ({served(r[PLAIN_VARIANT])})", "POST /v1/functions/{name}/invoke",
             r[PLAIN_VARIANT]["latency_ms"]),
            (f"{label}: python -c 'import ...' (fresh interpreter)", "posix_spawn + waitpid", r["python_c_ms"]),
            (f"{label}: fork of an interpreter that imported the layer", "fork + waitpid",
             r["zygote_probe"]["fork_ms"])])
    report.table(f"Cold starts with dependencies, spaced (sandbox: {sandbox})", LATENCY_HEADERS, rows)
    report.table("Cold invoke p50 ratios", ["package", "layer ahead / plain", "layer ahead / python -c import"],
                 [[label, p50(r[LAYER_VARIANT]["latency_ms"]) / p50(r[PLAIN_VARIANT]["latency_ms"]),
                   p50(r[LAYER_VARIANT]["latency_ms"]) / p50(r["python_c_ms"])] for label, r in results.items()])
    report.table("Memory of a ready instance that imported the layer (each one holds its own copy)",
                 ["layer of", "instances", "RSS MB", "PSS MB", "cgroup charge MB"],
                 [[label, len(m), *(mean_mb(m, k) for k in ("rss_kb", "pss_kb", "cgroup_kb"))]
                  for label, r in results.items() for m in [r["layer_instances"]]])
    report.table("What a process that imported the layer holds (what a forking layer zygote would share, "
                 "and whether it could fork safely)",
                 ["layer of", "top-level names", "import ms", "RSS MB", "PSS MB", "tasks", "Python threads",
                  "fit for a zygote (fork_safety)"],
                 [[label, " ".join(r["top_level"]), p["import_ms"], p["rss_kb"] / 1024, p["pss_kb"] / 1024, p["tasks"],
                   p["python_threads"], "yes" if not p["unfit"] else "; ".join(f"{k}: {v}" for k, v in p["unfit"].items())]
                  for label, r in results.items() for p in [r["zygote_probe"]]])


def served(cold: dict) -> str:
    counts = Counter(cold["paths"])
    return ", ".join(f"{n} {path}" for path, n in counts.most_common())


def p50(values: list[float]) -> float:
    return summarize(values)["p50"]


def mean_mb(samples: list[dict], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return sum(values) / len(values) / 1024 if values else None


if __name__ == "__main__":
    sys.exit(main())
