"""The machine a run measures on: waiting for other people's work to leave the CPUs idle, and
what the results record about the machine and the frazil source measured."""
from __future__ import annotations

import os
import platform as _platform
import subprocess
import sys
import time

from bench.paths import REPO
from bench.procfs import free_m
from bench.source import ENV_FRAZIL_REF, ENV_FRAZIL_SRC


def cpu_times() -> tuple[int, int]:
    """All CPUs' (idle + iowait, total) time so far, in ticks (from /proc/stat)."""
    with open("/proc/stat") as f:
        nums = [int(x) for x in f.readline().split()[1:]]
    return nums[3] + nums[4], sum(nums)


def idle_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of all CPUs idle between two `cpu_times()`."""
    return (after[0] - before[0]) / max(1, after[1] - before[1])


def cpu_idle_fraction(interval_s: float = 1.0) -> float:
    """Share of all CPUs idle over `interval_s`."""
    before = cpu_times()
    time.sleep(interval_s)
    return idle_share(before, cpu_times())


def wait_for_quiet(what: str, max_wait_s: float = 120.0, min_idle: float = 0.85) -> dict:
    """Wait (bounded) until other work on this machine leaves it mostly idle, so that a
    measurement does not share two CPUs with someone else's test suite. Records what it saw."""
    started = time.monotonic()
    idle = cpu_idle_fraction()
    told = False
    while idle < min_idle and time.monotonic() - started < max_wait_s:
        if not told:
            print(f"waiting up to {max_wait_s:g} s for a quiet machine before {what} "
                  f"(CPU idle {idle:.0%}, want {min_idle:.0%})", file=sys.stderr, flush=True)
            told = True
        time.sleep(2)
        idle = cpu_idle_fraction()
    quiet = idle >= min_idle
    if not quiet:
        print(f"warning: machine still busy before {what} (CPU idle {idle:.0%}); figures will be noisy",
              file=sys.stderr, flush=True)
    return {"phase": what, "cpu_idle": round(idle, 3), "quiet": quiet, "waited_s": round(time.monotonic() - started, 1),
            "loadavg": os.getloadavg()}


def machine_info() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git("rev-parse", "--short", "HEAD"),
        # Other people work in this tree: say which uncommitted frazil files were measured.
        "frazil_uncommitted": git("status", "--porcelain", "--", "frazil").splitlines(),
        "frazil_source": os.environ.get(ENV_FRAZIL_SRC) or f"{REPO / 'frazil'} (working tree)",
        "frazil_ref": os.environ.get(ENV_FRAZIL_REF),
        "cpus": os.cpu_count(),
        "kernel": _platform.release(),
        "python": sys.version.split()[0],
        "memory_mb": free_m().get("total"),
        "loadavg_at_start": os.getloadavg(),
    }
