"""What freezing idle instances adds to a warm invoke: the same warm invoke with and without
a thaw before it and a freeze after it, side by side in one run.

    .venv/bin/python bench/freeze_warm.py [-n 2000] [--warmup 100]

Two instances of one tiny Python function in the isolated sandbox (made through the sandbox
API, zygote path), driven over the runtime protocol. Each iteration runs, in alternating
order, one warm invoke on each:
  plain    invoke (send the frame, wait for the result)
  frozen   thaw(); invoke; freeze()   - what the instance pool does on acquire and release
The frozen instance really is frozen between iterations (the cgroup freezer), as an idle
instance is. Prints p50/p90/p99/mean of both (µs), their difference and ratio at each
percentile, and the thaw() and freeze() calls alone.

`BENCH_FRAZIL_SRC=/dir` measures the frazil package in /dir instead of this checkout's.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench.source  # noqa: E402,F401  (puts $BENCH_FRAZIL_SRC, if set, first on sys.path)
from bench.sandbox_lifecycle import Channel, percentiles  # noqa: E402
from frazil.runtimes import PYTHON, protocol  # noqa: E402
from frazil.sandbox.base import SandboxSpec  # noqa: E402
from frazil.sandbox.select import make_sandbox  # noqa: E402
from frazil.settings import Settings  # noqa: E402


async def started_instance(sandbox, code: Path, name: str) -> tuple[object, Channel]:
    proc = await sandbox.create(SandboxSpec(instance_id=name, runtime=PYTHON, code_dir=code))
    channel = Channel(proc)
    assert (await channel.recv())["type"] == protocol.HELLO
    await channel.send({"type": protocol.INIT, "handler": "index.main", "code_dir": proc.paths.code_dir,
                        "layer_dirs": [], "env": {}, "function": "bench", "version": 1, "memory_mb": 128})
    ready = await channel.recv()
    assert ready["type"] == protocol.READY, ready
    return proc, channel


async def invoke(channel: Channel, i: int) -> None:
    await channel.send({"type": protocol.INVOKE, "id": f"i{i}", "event": {"n": i}, "cold": False,
                        "deadline_ms": (time.time() + 10) * 1000})
    reply = await channel.recv()
    assert reply["type"] == protocol.RESULT and reply["ok"], reply


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="frazil-freeze-bench-") as tmp:
        os.chmod(tmp, 0o755)
        code = Path(tmp) / "code"
        code.mkdir(mode=0o755)
        (code / "index.py").write_text("def main(event, context):\n    return event\n")
        (code / "index.py").chmod(0o644)
        settings = Settings(data_dir=Path(tmp) / "data", sandbox="isolated", sandbox_prebuilt=0,
                            sandbox_prebuilt_node=0, sandbox_freeze_idle=True)
        sandbox = make_sandbox(settings)
        await sandbox.start()
        samples: dict[str, list[float]] = {"plain": [], "frozen": [], "thaw()": [], "freeze()": []}
        try:
            plain, plain_channel = await started_instance(sandbox, code, "bench-plain")
            frozen, frozen_channel = await started_instance(sandbox, code, "bench-frozen")
            if getattr(frozen, "_freeze_fd", None) is None:
                raise SystemExit("this machine's cgroups have no freezer: nothing to measure")
            frozen.freeze()
            for i in range(args.warmup + args.n):
                order = ("plain", "frozen") if i % 2 == 0 else ("frozen", "plain")
                for which in order:
                    if which == "plain":
                        t0 = time.perf_counter()
                        await invoke(plain_channel, i)
                        t1 = time.perf_counter()
                        if i >= args.warmup:
                            samples["plain"].append((t1 - t0) * 1e6)
                    else:
                        t0 = time.perf_counter()
                        frozen.thaw()
                        t1 = time.perf_counter()
                        await invoke(frozen_channel, i)
                        t2 = time.perf_counter()
                        frozen.freeze()
                        t3 = time.perf_counter()
                        if i >= args.warmup:
                            samples["frozen"].append((t3 - t0) * 1e6)
                            samples["thaw()"].append((t1 - t0) * 1e6)
                            samples["freeze()"].append((t3 - t2) * 1e6)
        finally:
            await sandbox.close()

    backend = f"cgroup v{sandbox.cgroups.version}"
    print(f"freeze_warm: n={args.n} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} {backend} "
          f"frazil={Path(sys.modules['frazil'].__file__).parent}")
    stats = {name: percentiles(values) for name, values in samples.items()}
    keys = ("p50", "p90", "p99", "mean")
    print("| µs | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name in samples:
        print(f"| {name} | " + " | ".join(f"{stats[name][k]:.1f}" for k in keys) + " |")
    print("| frozen - plain | " + " | ".join(f"{stats['frozen'][k] - stats['plain'][k]:+.1f}" for k in keys) + " |")
    print("| frozen / plain | " + " | ".join(f"{stats['frozen'][k] / stats['plain'][k]:.3f}" for k in keys) + " |")


if __name__ == "__main__":
    asyncio.run(main())
