"""What idle instances with a runaway thread cost a bystander, with and without freezing.

    .venv/bin/python bench/idle_spinners.py [--spinners 6] [-n 30]

K "spinner" instances each run one invocation that starts a thread spinning on the CPU and
returns: the thread outlives the invocation, each instance up to its tier's quota. A
bystander instance then runs a CPU-bound invocation (a fixed loop) n times. Both phases run
in one process on the same sandbox: first with the spinners idle as the pool leaves them
(frozen, `SandboxProcess.freeze`), then thawed (as with FRAZIL_SANDBOX_FREEZE_IDLE=0), then
frozen again. Prints the bystander's duration p50/p90 (ms) per phase, the ratio to the
frozen phase.
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
from bench.freeze_warm import started_instance  # noqa: E402
from bench.sandbox_lifecycle import percentiles  # noqa: E402
from frazil.runtimes import protocol  # noqa: E402
from frazil.sandbox.select import make_sandbox  # noqa: E402
from frazil.settings import Settings  # noqa: E402

HANDLER = '''
import threading, time

def spin():
    while True:
        pass

def main(event, context):
    if event.get("spin"):
        threading.Thread(target=spin, daemon=True).start()
        return "spinning"
    n = 0
    for i in range(event["loops"]):
        n += i
    return n
'''


async def call(channel, event: dict, i: int) -> float:
    started = time.perf_counter()
    await channel.send({"type": protocol.INVOKE, "id": f"i{i}", "event": event, "cold": False,
                        "deadline_ms": (time.time() + 60) * 1000})
    reply = await channel.recv(60)
    assert reply["type"] == protocol.RESULT and reply["ok"], reply
    return (time.perf_counter() - started) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spinners", type=int, default=6)
    parser.add_argument("-n", type=int, default=30)
    parser.add_argument("--loops", type=int, default=300_000, help="the bystander's loop (CPU-bound work)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="frazil-spinners-bench-") as tmp:
        os.chmod(tmp, 0o755)
        code = Path(tmp) / "code"
        code.mkdir(mode=0o755)
        (code / "index.py").write_text(HANDLER)
        (code / "index.py").chmod(0o644)
        settings = Settings(data_dir=Path(tmp) / "data", sandbox="isolated", sandbox_prebuilt=0,
                            sandbox_prebuilt_node=0)
        sandbox = make_sandbox(settings)
        await sandbox.start()
        results: dict[str, list[float]] = {}
        try:
            bystander, by_channel = await started_instance(sandbox, code, "bystander")
            spinners = [await started_instance(sandbox, code, f"spinner{i}") for i in range(args.spinners)]
            for i, (proc, channel) in enumerate(spinners):
                await call(channel, {"spin": True}, i)
                proc.freeze()
            for phase in ("frozen", "running", "frozen again"):
                for proc, _ in spinners:
                    proc.thaw() if phase == "running" else proc.freeze()
                results[phase] = [await call(by_channel, {"loops": args.loops}, i) for i in range(args.n)]
        finally:
            await sandbox.close()

    print(f"idle_spinners: spinners={args.spinners} n={args.n} cpus={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.1f} frazil={Path(sys.modules['frazil'].__file__).parent}")
    base = percentiles(results["frozen"])["p50"]
    print("| spinners | bystander p50 ms | p90 ms | p50 / frozen |")
    print("|---|---:|---:|---:|")
    for phase, values in results.items():
        p = percentiles(values)
        print(f"| {phase} | {p['p50']:.1f} | {p['p90']:.1f} | {p['p50'] / base:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
