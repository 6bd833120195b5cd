"""A fixed CPU share for a process tree: a cgroup v1 `cpu` directory with a CFS quota, so that a
benchmark's curve does not depend on how many cores the machine has or how busy it is.

`CpuShares(weight)` makes `<cpu hierarchy>/frazil-bench-<hex>/` and, per `confine`, a child
`<name>` holding the given processes, limited to `share` x one core (or not limited). A quota
is a ceiling, not a guarantee: on a machine busy with other work the group would get less. So
the parent gets `weight` as its cpu.shares (a task outside it weighs 1024), and the benchmark's
groups get their CPU ahead of that work. `close()` moves whatever is still in them back to the
root and removes them (the benchmark calls it in its `finally`; a removal that fails is
reported, never silent).
"""
from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")  # where frazil's instance scopes count their CPU time
# A short period: with 100 ms a process capped at 0.1 core runs 10 ms and then stalls 90 ms, and a
# closed-loop benchmark's latency depends on where those stalls fall (bench.cluster's p50 with one
# invoker: 47-95 ms from run to run at 100 ms, 38-41 ms at 20 ms).
PERIOD_US = 20_000


def available() -> str | None:
    """None when cgroup v1's cpu controller can be used here; else why not."""
    if not (CPU_ROOT / "cpu.cfs_quota_us").exists():
        return f"no cgroup v1 cpu controller at {CPU_ROOT}"
    if not os.access(CPU_ROOT, os.W_OK):
        return f"{CPU_ROOT} is not writable (run as root)"
    return None


def limit(directory: Path, share: float) -> None:
    """Cap the cgroup `directory` (and everything below it) at `share` x one core."""
    (directory / "cpu.cfs_period_us").write_text(str(PERIOD_US))
    (directory / "cpu.cfs_quota_us").write_text(str(max(1000, int(share * PERIOD_US))))


def throttling(directory: Path) -> dict[str, int]:
    """cpu.stat: nr_periods, nr_throttled, throttled_time (ns)."""
    try:
        return {k: int(v) for k, v in (line.split() for line in (directory / "cpu.stat").read_text().splitlines())}
    except (OSError, ValueError):
        return {}


def cpu_cgroup(pid: int) -> str | None:
    """The cpu hierarchy path `pid` is in ("/" = the root), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "cpu" in controllers.split(","):
                return path
    except OSError:
        return None
    return None


class CpuShares:
    def __init__(self, weight: int = 1024):
        self.root = CPU_ROOT / f"frazil-bench-{secrets.token_hex(4)}"
        self.weight = weight
        self.groups: dict[str, Path] = {}

    def confine(self, name: str, pids: list[int], share: float | None) -> Path:
        """Put `pids` (whole processes) in the cgroup `name`, capped at `share` of one core
        (None: not capped); processes they start later are born in it."""
        if not self.root.exists():
            self.root.mkdir()
            (self.root / "cpu.shares").write_text(str(self.weight))
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = self.root / name
            group.mkdir()
        if share is not None:
            limit(group, share)
        for pid in pids:
            try:
                (group / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                pass  # it ended meanwhile
        return group

    def close(self, timeout_s: float = 10.0) -> None:
        """Move what is left to the root cgroup and remove every directory made here."""
        for group in [*self.groups.values(), self.root]:
            if not group.exists():
                continue
            deadline = time.monotonic() + timeout_s
            while True:
                for pid in (group / "cgroup.procs").read_text().split():
                    try:
                        (CPU_ROOT / "cgroup.procs").write_text(pid)
                    except ProcessLookupError:
                        pass
                try:
                    group.rmdir()
                    break
                except OSError as exc:  # a task was still leaving: once more, within the deadline
                    if time.monotonic() > deadline:
                        print(f"warning: could not remove the cgroup {group} ({exc})", file=sys.stderr)
                        break
                    time.sleep(0.05)
        self.groups.clear()
