"""What an instance's own network namespace costs the process that clones it, in isolation
from the rest of a create: clone() of a child that reports back at once, three ways.

    .venv/bin/python bench/netns_cost.py [-n 300] [--burst 16]

  shared     clone(CLONE_PARENT-free, no NEWNET): the child stays in our namespace (before)
  made ahead clone, then setns() into a namespace the NetnsPool made (the zygote/exec paths;
             taken before the clones, the pool refilled before they start: its maker runs in
             the platform, not in the process that clones)
  cloned     clone(CLONE_NEWNET), then bring lo up (instances built ahead of time, or when
             the pool is empty)
Each sample is clone -> the child's byte on a pipe -> reaped (the namespace's teardown is the
kernel's, after). With --burst N, N children are cloned back to back before any is reaped
(what a burst of cold starts does to the kernel's namespace lock). Prints p50/p90/mean in µs.
Root only.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench.source  # noqa: E402,F401  (puts $BENCH_FRAZIL_SRC, if set, first on sys.path)
from frazil.sandbox.helper import netns  # noqa: E402
from frazil.sandbox.helper import syscalls as sc  # noqa: E402
from frazil.sandbox.netns import NetnsPool  # noqa: E402


def one(kind: str, fd: int | None) -> tuple[int, int, float]:
    """Clone a child of `kind` (into namespace `fd` if given); returns (pid, read end, start
    time); the child writes one byte."""
    r, w = os.pipe()
    started = time.perf_counter()
    pid = sc.clone(signal.SIGCHLD | (sc.CLONE_NEWNET if kind == "cloned" else 0))
    if pid == 0:
        try:
            if fd is not None:
                sc.setns(fd, sc.CLONE_NEWNET)
            elif kind == "cloned":
                netns.loopback_up()
            os.write(w, b"1")
        finally:
            os._exit(0)
    os.close(w)
    if fd is not None:
        os.close(fd)
    return pid, r, started


def wait_full(pool: NetnsPool) -> None:
    deadline = time.monotonic() + 10
    while pool.ready_count() < pool.target and time.monotonic() < deadline:
        time.sleep(0.001)  # a bench, not a test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--burst", type=int, default=1)
    args = parser.parse_args()
    pool = NetnsPool(target=max(8, args.burst))
    pool.start()
    samples: dict[str, list[float]] = {"shared": [], "made ahead": [], "cloned": []}
    try:
        for i in range(args.n // args.burst):
            for kind in samples:
                fds = [None] * args.burst
                if kind == "made ahead":
                    # Taken first, then the maker is let refill: what is timed is the
                    # clone and setns alone, as in the zygote (the maker runs in the platform).
                    wait_full(pool)
                    fds = [pool.take() for _ in range(args.burst)]
                    if None in fds:
                        raise SystemExit("the namespace pool did not fill in time")
                    wait_full(pool)
                children = [one(kind, fd) for fd in fds]
                for pid, r, started in children:
                    os.read(r, 1)
                    samples[kind].append((time.perf_counter() - started) * 1e6)
                    os.close(r)
                    os.waitpid(pid, 0)
    finally:
        pool.close()
    print(f"netns_cost: n={args.n} burst={args.burst} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    print("| µs | p50 | p90 | mean |")
    print("|---|---:|---:|---:|")
    for kind, values in samples.items():
        ordered = sorted(values)
        print(f"| {kind} | {ordered[len(ordered) // 2]:.0f} | {ordered[int(len(ordered) * 0.9)]:.0f} | "
              f"{statistics.fmean(ordered):.0f} |")


if __name__ == "__main__":
    main()
