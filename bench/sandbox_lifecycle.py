"""Create + destroy cost of isolated sandbox instances.

    .venv/bin/python bench/sandbox_lifecycle.py [-n 200] [--runtime python3.11] [--sandbox isolated|plain]

For each iteration: create() (cgroup, launcher clone, namespaces, mounts, seccomp, exec),
then wait for the runtime's "hello" frame on the channel, then destroy() (kill, reap, remove
the cgroup). Prints p50/p90/p99/max per phase, in milliseconds. The indented rows split
create (isolated sandbox only): cgroup = make the cgroup and open its join files (platform),
spawn = until the launcher answers with the pid, exec = until the child has entered the
sandbox and exec'd the runtime (its error pipe closed).
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

from frazil.runtimes import RUNTIMES, protocol  # noqa: E402
from frazil.sandbox.base import SandboxSpec  # noqa: E402
from frazil.sandbox.select import make_sandbox  # noqa: E402
from frazil.settings import Settings  # noqa: E402


async def read_hello(proc, timeout: float = 10.0) -> dict:
    loop = asyncio.get_running_loop()
    decoder = protocol.FrameDecoder()
    deadline = loop.time() + timeout
    while True:
        data = await asyncio.wait_for(loop.sock_recv(proc.channel, 4096), deadline - loop.time())
        if not data:
            raise RuntimeError(f"the runtime exited before hello: {(await proc.wait()).describe()}")
        frames = decoder.feed(data)
        if frames:
            return json.loads(frames[0])


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1], "mean": statistics.fmean(ordered)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runtime", default="python3.11", choices=sorted(RUNTIMES))
    parser.add_argument("--sandbox", default="isolated")
    parser.add_argument("--memory", type=int, default=128, help="the tier's memory (MB)")
    parser.add_argument("--cpu", type=float, default=0.5, help="the tier's CPU quota (CPUs)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="frazil-sandbox-bench-") as tmp:
        os.chmod(tmp, 0o755)
        code = Path(tmp) / "code"
        code.mkdir(mode=0o755)
        (code / "index.py").write_text("def main(event, context):\n    return event\n")
        (code / "index.py").chmod(0o644)
        settings = Settings(data_dir=Path(tmp) / "data", sandbox=args.sandbox)
        sandbox = make_sandbox(settings)
        t = time.perf_counter()
        await sandbox.start()
        start_ms = (time.perf_counter() - t) * 1000
        phases: dict[str, list[float]] = {}
        for name in ("  cgroup", "  spawn", "  exec", "create (to exec)", "create to hello", "destroy", "total"):
            phases[name] = []
        try:
            for i in range(args.warmup + args.n):
                spec = SandboxSpec(instance_id=f"b{secrets.token_hex(6)}", runtime=RUNTIMES[args.runtime],
                                   code_dir=code, memory_mb=args.memory, cpu=args.cpu)
                t0 = time.perf_counter()
                proc = await sandbox.create(spec)
                t1 = time.perf_counter()
                hello = await read_hello(proc)
                t2 = time.perf_counter()
                await proc.destroy()
                t3 = time.perf_counter()
                assert hello["type"] == protocol.HELLO, hello
                if i >= args.warmup:
                    for key in ("cgroup_ms", "spawn_ms", "exec_ms"):
                        if key in proc.stats:
                            phases.setdefault(f"  {key[:-3]}", []).append(proc.stats[key])
                    phases["create (to exec)"].append((t1 - t0) * 1000)
                    phases["create to hello"].append((t2 - t0) * 1000)
                    phases["destroy"].append((t3 - t2) * 1000)
                    phases["total"].append((t3 - t0) * 1000)
        finally:
            await sandbox.close()

    print(f"sandbox={sandbox.name} runtime={args.runtime} tier={args.memory} MB/{args.cpu} CPU n={args.n} "
          f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} start={start_ms:.1f} ms")
    print(f"{'phase (ms)':<20}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'mean':>9}")
    for name, values in phases.items():
        if not values:
            continue
        p = percentiles(values)
        print(f"{name:<20}" + "".join(f"{p[k]:>9.2f}" for k in ("p50", "p90", "p99", "max", "mean")))


if __name__ == "__main__":
    asyncio.run(main())
