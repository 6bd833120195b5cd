"""What /proc and /sys/fs/cgroup say about processes: command lines, CPU time, memory, and the
CPU and memory cgroups an instance runs in. (The process tree itself: `frazil.testing.processes`.)"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path


def cmdline(pid: int) -> str:
    """The command line, arguments joined by spaces (a zygote-forked instance rewrites its
    argv area in place, so the NUL separators are not to be trusted)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


GENERIC_FLAG = " --generic"  # after loop.js: a generic Node instance (frazil.runtimes.GENERIC_FLAG)


def runtime_loop(pid: int) -> str:
    """The runtime loop `pid` runs: "loop.py", "loop.js" (its last argument, or the one before
    a generic Node instance's flag), or "" for any other process."""
    line = cmdline(pid).removesuffix(GENERIC_FLAG)
    return next((loop for loop in ("loop.py", "loop.js") if line.endswith(f"/{loop}")), "")


def is_runtime_process(pid: int) -> bool:
    """Runs a runtime loop: `... /runtime/python/loop.py` or `... loop.js`."""
    return bool(runtime_loop(pid))


def is_spare_instance(pid: int) -> bool:
    """A generic instance built ahead of time, not yet given to a function."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            names = [line.rsplit("/", 1)[-1] for line in f.read().splitlines() if not line.endswith(":/")]
    except OSError:
        return False
    # All of them: once taken, its cgroups are renamed, though a hybrid host's unified one keeps the name.
    return bool(names) and all(name.startswith("generic-") for name in names)


def cgroup_file(pid: int, controller: str, v1_name: str, v2_name: str) -> Path | None:
    """The file `v1_name` of the v1 `controller` cgroup `pid` is in (or `v2_name` of its v2
    cgroup), when that cgroup is not the root and the file is there."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if path in ("/", ""):
            continue
        if controller in controllers.split(","):
            candidate = Path("/sys/fs/cgroup") / controller / path.lstrip("/") / v1_name
        elif controllers == "":
            candidate = Path("/sys/fs/cgroup") / path.lstrip("/") / v2_name
        else:
            continue
        if candidate.exists():
            return candidate
    return None


def cgroup_cpu_stat(pid: int) -> dict[str, int] | None:
    """cpu.stat of the CPU cgroup `pid` is in: nr_periods, nr_throttled, throttled_time (ns in
    v1; v2's throttled_usec)."""
    path = cgroup_file(pid, "cpu", "cpu.stat", "cpu.stat")
    try:
        return {k: int(v) for k, v in (x.split() for x in path.read_text().splitlines())} if path else None
    except (OSError, ValueError):
        return None


def throttle_summary(stats: list[dict | None]) -> dict:
    """How many of these cgroups' CPU quota throttled them, and for how long on average."""
    stats = [st for st in stats if st]
    throttled = [st for st in stats if st.get("nr_throttled", 0) > 0]
    ns = [st.get("throttled_time", st.get("throttled_usec", 0) * 1000) for st in throttled]
    return {"cgroups": len(stats), "throttled": len(throttled),
            "mean_throttled_ms": sum(ns) / len(ns) / 1e6 if ns else 0.0}


def memory_cgroup_usage_kb(pid: int) -> int | None:
    """What the kernel charges to the memory cgroup `pid` is in (v1 memory.usage_in_bytes,
    or v2 memory.current)."""
    path = cgroup_file(pid, "memory", "memory.usage_in_bytes", "memory.current")
    try:
        return int(path.read_text()) // 1024 if path else None
    except (OSError, ValueError):
        return None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads) so far."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def run_ns(pid: int) -> int:
    """Nanoseconds on a CPU so far, all threads of `pid` (schedstat: finer than cpu_seconds's
    clock ticks); 0 when it is gone."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(task.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total


def smaps_kb(pid: int, field_name: str = "Pss") -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_kb(pids: list[int], field_name: str = "Pss") -> int:
    return sum(smaps_kb(p, field_name) or 0 for p in pids)


def free_m() -> dict[str, int]:
    out = subprocess.run(["free", "-m"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("Mem:"):
            nums = [int(x) for x in line.split()[1:]]
            return dict(zip(["total", "used", "free", "shared", "buff_cache", "available"], nums))
    return {}
