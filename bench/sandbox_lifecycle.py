"""Create + destroy cost of isolated sandbox instances, by creation path.

    .venv/bin/python bench/sandbox_lifecycle.py [-n 200] [--runtime python3.11] [--sandbox isolated|plain]
        [--create exec|zygote|prebuilt] [--back-to-back] [--burst N]

For each iteration: create() (the isolated sandbox's path: `exec` clones + enters + execs a
fresh runtime; `zygote` forks a generic instance from the Python zygote and gives it its
code; `prebuilt` gives the code to a generic instance built ahead of time), then wait for the
runtime's "hello" frame on the channel, then "init" (import the handler) until "ready", then
one invoke until its result, then destroy() (kill, reap, remove the cgroup). "instance CPU" is
what the instance itself ran (all its threads, /proc/PID/task/*/schedstat) from create() to
the result: for a pre-built one, only what its cold start costs it (load hardly moves it). With `prebuilt`, each iteration first waits until
the pool has refilled (every create is a hit) unless --back-to-back. `--burst N`: each iteration
starts N creates at once (a burst of cold starts), each taken to "ready" and destroyed as
above; every phase row then has N samples per iteration.

`BENCH_FRAZIL_SRC=/dir` measures the frazil package in /dir instead of this checkout's (e.g.
an older tree, for before/after figures).

Prints p50/p90/p99/max per phase, in milliseconds. The indented rows split create (isolated
sandbox only): cgroup = make the cgroup and open its join files (platform), spawn = until the
launcher or zygote answers with the pid, exec = until the child has entered the sandbox (its
error pipe closed), specialize = the platform attaching the code and writing the go byte.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench.source  # noqa: E402,F401  (puts $BENCH_FRAZIL_SRC, if set, first on sys.path)
from bench.procfs import run_ns  # noqa: E402
from frazil.runtimes import PYTHON, RUNTIMES, protocol  # noqa: E402
from frazil.sandbox.base import SandboxSpec  # noqa: E402
from frazil.sandbox.select import make_sandbox  # noqa: E402
from frazil.settings import Settings  # noqa: E402

CREATE_PATHS = {
    "exec": dict(sandbox_zygote=False, sandbox_prebuilt=0, sandbox_prebuilt_node=0),
    "zygote": dict(sandbox_zygote=True, sandbox_prebuilt=0, sandbox_prebuilt_node=0),
    "prebuilt": dict(sandbox_zygote=True, sandbox_prebuilt=4, sandbox_prebuilt_node=2),
}


class Channel:
    def __init__(self, proc):
        self.proc = proc
        self.loop = asyncio.get_running_loop()
        self.decoder = protocol.FrameDecoder()
        self.frames: list[dict] = []

    async def recv(self, timeout: float = 10.0) -> dict:
        deadline = self.loop.time() + timeout
        while not self.frames:
            data = await asyncio.wait_for(self.loop.sock_recv(self.proc.channel, 65536), deadline - self.loop.time())
            if not data:
                raise RuntimeError(f"the runtime exited: {(await self.proc.wait()).describe()}")
            self.frames += [json.loads(p) for p in self.decoder.feed(data)]
        return self.frames.pop(0)

    async def send(self, message: dict) -> None:
        await self.loop.sock_sendall(self.proc.channel, protocol.encode(message))


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1], "mean": statistics.fmean(ordered)}


async def one(sandbox, args, code: Path) -> tuple:
    """Create one instance, take it to "ready", destroy it; the instance and its timestamps."""
    spec = SandboxSpec(instance_id=f"b{secrets.token_hex(6)}", runtime=RUNTIMES[args.runtime],
                       code_dir=code, memory_mb=args.memory, cpu=args.cpu)
    table = getattr(sandbox, "table", None)  # the isolated sandbox's instances, pre-built ones included
    cpu_before = {p.pid: run_ns(p.pid) for p in table.live.values()} if table is not None else {}
    t0 = time.perf_counter()
    proc = await sandbox.create(spec)
    t1 = time.perf_counter()
    channel = Channel(proc)
    hello = await channel.recv()
    t2 = time.perf_counter()
    await channel.send({"type": protocol.INIT, "handler": "index.main", "code_dir": proc.paths.code_dir,
                        "layer_dirs": list(proc.paths.layer_dirs), "env": {}, "function": "bench",
                        "version": 1, "memory_mb": args.memory})
    ready = await channel.recv()
    t3 = time.perf_counter()
    await channel.send({"type": protocol.INVOKE, "id": "bench", "event": {"name": "bench"}, "cold": True,
                        "deadline_ms": (time.time() + 60) * 1000})
    result = await channel.recv()
    t4 = time.perf_counter()
    cpu_ms = (run_ns(proc.pid) - cpu_before.get(proc.pid, 0)) / 1e6
    await proc.destroy()
    t5 = time.perf_counter()
    assert hello["type"] == protocol.HELLO, hello
    assert ready["type"] == protocol.READY, ready
    assert result["type"] == protocol.RESULT and result["ok"], result
    return proc, t0, t1, t2, t3, t4, t5, cpu_ms


async def greeted(generics, shapes, timeout_s: float) -> None:
    """Wait (bounded) until every ready generic instance has said hello."""
    deadline = time.monotonic() + timeout_s
    while not all(p.greeted() for shape in shapes for p in generics.ready(shape)) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runtime", default="python3.11", choices=sorted(RUNTIMES))
    parser.add_argument("--sandbox", default="isolated")
    parser.add_argument("--create", default="exec", choices=sorted(CREATE_PATHS),
                        help="how the isolated sandbox makes instances")
    parser.add_argument("--back-to-back", action="store_true",
                        help="prebuilt: do not wait for the pool to refill between iterations")
    parser.add_argument("--settle-ms", type=float, default=2.0,
                        help="prebuilt: idle time after the pool has refilled, before each create")
    parser.add_argument("--burst", type=int, default=1, help="creates started at once per iteration")
    parser.add_argument("--memory", type=int, default=128, help="the tier's memory (MB)")
    parser.add_argument("--cpu", type=float, default=0.5, help="the tier's CPU quota (CPUs)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="frazil-sandbox-bench-") as tmp:
        os.chmod(tmp, 0o755)
        code = Path(tmp) / "code"
        code.mkdir(mode=0o755)
        if args.runtime.startswith("python"):
            (code / "index.py").write_text("def main(event, context):\n    return event\n")
            (code / "index.py").chmod(0o644)
        else:
            (code / "index.js").write_text("exports.main = async (event) => event;\n")
            (code / "index.js").chmod(0o644)
        settings = Settings(data_dir=Path(tmp) / "data", sandbox=args.sandbox, **CREATE_PATHS[args.create])
        sandbox = make_sandbox(settings)
        if hasattr(sandbox, "early_hello_ok"):  # a tree from before issue 9 (BENCH_FRAZIL_SRC): it
            sandbox.early_hello_ok = True  # made instances ahead of time only when told so
        t = time.perf_counter()
        await sandbox.start()
        start_ms = (time.perf_counter() - t) * 1000
        generics = getattr(sandbox, "generics", None)
        if generics is not None and args.create == "prebuilt":
            from frazil.sandbox.base import InstanceShape

            shapes = {InstanceShape(PYTHON, tier.memory_mb, tier.cpu, settings.tmp_mb, settings.pids_max)
                      for tier in settings.tiers.values()}  # what the instance pool keeps ready
            shapes.add(InstanceShape(RUNTIMES[args.runtime], args.memory, args.cpu, settings.tmp_mb, settings.pids_max))
            for shape in shapes:
                sandbox.keep_ready(shape, CREATE_PATHS["prebuilt"]["sandbox_prebuilt"])
        phases: dict[str, list[float]] = {}
        paths: dict[str, int] = {}
        netns: dict[str, int] = {}
        for name in ("  cgroup", "  spawn", "  exec", "  specialize", "create", "create to hello", "hello to ready",
                     "create to ready", "ready to result", "create to result", "instance CPU", "destroy"):
            phases[name] = []
        try:
            for i in range(args.warmup + args.n):
                if generics is not None and args.create == "prebuilt" and not args.back_to_back:
                    await generics.settled(60)
                    await greeted(generics, shapes, 60)  # a Node runtime warms up before its hello
                    await asyncio.sleep(args.settle_ms / 1000)  # e.g. let the last one's runtime reach its hello
                outcomes = await asyncio.gather(*(one(sandbox, args, code) for _ in range(args.burst)))
                for proc, t0, t1, t2, t3, t4, t5, cpu_ms in outcomes:
                    if i < args.warmup:
                        continue
                    path = proc.stats.get("path", args.sandbox)
                    paths[path] = paths.get(path, 0) + 1
                    if "netns" in proc.stats:
                        netns[proc.stats["netns"]] = netns.get(proc.stats["netns"], 0) + 1
                    if path != "prebuilt":  # a prebuilt instance's build happened before create()
                        for key in ("cgroup_ms", "spawn_ms", "exec_ms"):
                            if key in proc.stats:
                                phases[f"  {key[:-3]}"].append(proc.stats[key])
                    if "specialize_ms" in proc.stats:
                        phases["  specialize"].append(proc.stats["specialize_ms"])
                    phases["create"].append((t1 - t0) * 1000)
                    phases["create to hello"].append((t2 - t0) * 1000)
                    phases["hello to ready"].append((t3 - t2) * 1000)
                    phases["create to ready"].append((t3 - t0) * 1000)
                    phases["ready to result"].append((t4 - t3) * 1000)
                    phases["create to result"].append((t4 - t0) * 1000)
                    phases["instance CPU"].append(cpu_ms)
                    phases["destroy"].append((t5 - t4) * 1000)
        finally:
            await sandbox.close()

    print(f"sandbox={sandbox.name} create={args.create}{' back-to-back' if args.back_to_back else ''} "
          f"burst={args.burst} netns={netns or '-'} "
          f"runtime={args.runtime} tier={args.memory} MB/{args.cpu} CPU n={args.n} cpus={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.1f} start={start_ms:.1f} ms paths={paths} "
          f"frazil={Path(sys.modules['frazil'].__file__).parent}")
    print(f"{'phase (ms)':<20}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'mean':>9}")
    for name, values in phases.items():
        if not values:
            continue
        p = percentiles(values)
        print(f"{name:<20}" + "".join(f"{p[k]:>9.2f}" for k in ("p50", "p90", "p99", "max", "mean")))


if __name__ == "__main__":
    asyncio.run(main())
