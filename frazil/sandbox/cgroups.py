"""Per-instance cgroups, on cgroup v2 or v1, behind one small interface.

Layout: <hierarchy>/frazil/<scope>/<instance>, where `scope` names one platform (a hash of
its data dir) so two servers on one machine only ever clean up their own instances.

An instance cgroup carries the tier's memory limit (swap off), its CPU quota and a pids
limit. The sandboxed child joins it by writing "0" to `cgroup.procs` descriptors that the
platform opened ahead of time (one per hierarchy), so the child needs no path and no
lookup. `oom_kills()` reads the kernel's own count of OOM kills, which is how an exit is
told apart from any other SIGKILL.

Invariant: only the platform that owns a scope creates or removes cgroups below it; a
cgroup is removed only once it has no process left (the kernel refuses otherwise).
"""
from __future__ import annotations

import abc
import errno
import hashlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT_NAME = "frazil"
CPU_PERIOD_US = 100_000
MOUNTINFO = "/proc/self/mountinfo"


class CgroupError(OSError):
    pass


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    cpu: float  # CPUs: 0.5 = 50 ms of every 100 ms
    pids_max: int
    # CFS burst, in periods of quota: CPU time left unused may be spent later, up to this
    # much beyond the quota in one period. A fresh cgroup starts with the burst in hand, so
    # a cold start (interpreter start, handler import) is throttled less; the average over
    # any long window stays at `cpu`.
    burst_periods: float = 1.0

    @property
    def quota_us(self) -> int:
        return max(1000, int(self.cpu * CPU_PERIOD_US))

    @property
    def burst_us(self) -> int:
        return int(self.quota_us * self.burst_periods)


def scope_for(data_dir: Path) -> str:
    """A short stable name for one platform's data dir."""
    return hashlib.sha256(os.fsencode(os.path.realpath(data_dir))).hexdigest()[:12]


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path, "rb", buffering=0) as f:
        return f.read().decode()


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _makedirs_racing(path: str, attempts: int = 3) -> None:
    """makedirs that survives another platform removing the shared frazil/ parent meanwhile."""
    for attempt in range(attempts):
        try:
            os.makedirs(path, exist_ok=True)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise


def cgroup_mounts(mountinfo: str | None = None) -> list[tuple[str, str, set[str]]]:
    """(fstype, mountpoint, controllers) of every cgroup mount, from /proc/self/mountinfo."""
    if mountinfo is None:
        with open(MOUNTINFO) as f:
            mountinfo = f.read()
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        mountpoint = fields[4].replace("\\040", " ")
        controllers = set(rfields[2].split(",")) if rfields[0] == "cgroup" else set()
        if rfields[0] == "cgroup2":
            try:
                controllers = set(_read(os.path.join(mountpoint, "cgroup.controllers")).split())
            except OSError:
                controllers = set()
        found.append((rfields[0], mountpoint, controllers))
    return found


class InstanceCgroup(abc.ABC):
    """One instance's cgroup (a directory in each hierarchy the backend uses)."""

    def __init__(self, name: str, dirs: list[str]):
        self.name = name
        self.dirs = dirs

    join_file = "cgroup.procs"

    def open_procs(self) -> list[int]:
        """Descriptors the child joins through, by writing b"0" to each (see `join_file`)."""
        fds = []
        try:
            for d in self.dirs:
                fds.append(os.open(os.path.join(d, self.join_file), os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                found.update(int(x) for x in _read(os.path.join(d, "cgroup.procs")).split())
            except FileNotFoundError:
                pass
        return found

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs)

    def rename(self, new_name: str) -> None:
        """Rename the directories (processes, limits and open join descriptors stay as they
        are). Raises OSError; the directories renamed before the error keep the new name."""
        for i, d in enumerate(self.dirs):
            target = os.path.join(os.path.dirname(d), new_name)
            os.rename(d, target)
            self.dirs[i] = target
            self._renamed(d, target)
        self.name = new_name

    def _renamed(self, old: str, new: str) -> None:
        """Hook for subclasses that index their directories."""

    @abc.abstractmethod
    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup (best effort, never raises)."""

    @abc.abstractmethod
    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer killed in this cgroup."""

    @abc.abstractmethod
    def cpu_usage_ns(self) -> int:
        """CPU time used by the cgroup's processes so far."""

    @abc.abstractmethod
    def memory_peak_bytes(self) -> int:
        """Highest memory use seen (0 when the kernel does not say)."""

    # CPU weight (shares) against other busy cgroups; the quota is a separate cap.
    weight_file: str = ""
    weight_default: bytes = b""
    weight_low: bytes = b""

    def open_cpu_weight(self) -> int:
        """A descriptor to change the CPU weight through (`set_cpu_weight`), opened ahead so
        that a write on a critical path costs one system call."""
        return os.open(os.path.join(self._cpu_dir(), self.weight_file), os.O_WRONLY | os.O_CLOEXEC)

    def set_cpu_weight(self, fd: int, low: bool) -> None:
        """Low: the cgroup only gets CPU nobody else wants (work done ahead of time); else the
        ordinary weight every instance has."""
        os.write(fd, self.weight_low if low else self.weight_default)

    @abc.abstractmethod
    def _cpu_dir(self) -> str:
        """The directory holding the CPU controller's files."""

    def _kill_listed(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def remove(self, timeout_s: float = 2.0) -> None:
        """Kill what is left, then remove the directories; raises CgroupError if it cannot."""
        deadline = time.monotonic() + timeout_s
        pending = list(self.dirs)
        while pending:
            d = pending[0]
            try:
                os.rmdir(d)
                pending.pop(0)
                continue
            except FileNotFoundError:
                pending.pop(0)
                continue
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise CgroupError(exc.errno, f"cannot remove cgroup {d}: {exc.strerror}") from None
            self.kill_all()
            time.sleep(0.001)


class CgroupBackend(abc.ABC):
    """The cgroup tree of one platform scope."""

    version: int

    def __init__(self, scope: str):
        self.scope = scope

    @abc.abstractmethod
    def scope_dirs(self) -> list[str]:
        """<hierarchy>/frazil/<scope> for every hierarchy used."""

    @abc.abstractmethod
    def prepare(self) -> None:
        """Create the frazil/<scope> parents (idempotent)."""

    @abc.abstractmethod
    def attach(self, name: str) -> InstanceCgroup:
        """The instance cgroup `name` as it exists (for clean-up)."""

    def instance_names(self) -> list[str]:
        names: set[str] = set()
        for d in self.scope_dirs():
            try:
                names.update(e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                pass
        return sorted(names)

    def root_dirs(self) -> list[str]:
        """<hierarchy>/frazil for every hierarchy used."""
        return sorted({os.path.dirname(d) for d in self.scope_dirs()})

    def remove_empty_scopes(self) -> int:
        """Remove other platforms' scopes that hold no instance (a platform killed before it
        could clean up leaves one). rmdir is atomic and refuses a cgroup with children or
        processes, so a live platform loses at most an empty parent, which its next create
        puts back (see `create`). Returns how many directories went."""
        removed = 0
        for root in self.root_dirs():
            try:
                entries = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False) and e.name != self.scope]
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    os.rmdir(entry.path)
                    removed += 1
                except OSError:
                    pass
        return removed

    def create(self, name: str, limits: Limits) -> InstanceCgroup:
        """A new instance cgroup with `limits` applied; raises OSError (FileExistsError if taken)."""
        try:
            return self._create(name, limits)
        except FileNotFoundError:  # our scope went (see remove_empty_scopes): once more
            self.prepare()
            return self._create(name, limits)

    @abc.abstractmethod
    def _create(self, name: str, limits: Limits) -> InstanceCgroup:
        """Make the instance cgroup; the scope is assumed to exist."""

    def remove_scope(self) -> None:
        """Remove frazil/<scope> (and frazil/ when no other scope is left); never raises."""
        for d in self.scope_dirs():
            for path in (d, os.path.dirname(d)):
                try:
                    os.rmdir(path)
                except OSError:
                    break


# --- cgroup v1 ------------------------------------------------------------------------

class V1Cgroup(InstanceCgroup):
    # The child is single-threaded when it joins, so moving its one thread ("tasks") moves
    # the whole process. The kernel lets a thread that moves itself skip the global
    # threadgroup rwsem (cgroup_procs_write_start), whose writer may wait for an RCU grace
    # period; a cgroup.procs write always takes it. On an idle machine that wait was up to
    # ~10 ms per create; under load both were ~0.2 ms at p50.
    join_file = "tasks"

    def __init__(self, name: str, dirs: dict[str, str]):
        super().__init__(name, sorted(set(dirs.values())))
        self.by_controller = dirs

    weight_file = "cpu.shares"
    weight_default = b"1024"
    weight_low = b"2"

    def _renamed(self, old: str, new: str) -> None:
        self.by_controller = {c: new if d == old else d for c, d in self.by_controller.items()}

    def _cpu_dir(self) -> str:
        return self.by_controller["cpu"]

    def kill_all(self) -> None:
        # Every process of an instance lives in its PID namespace, so killing its init
        # already takes the rest; this loop is the fallback for strays.
        self._kill_listed()

    def oom_kills(self) -> int:
        try:
            return _keyed(_read(os.path.join(self.by_controller["memory"], "memory.oom_control"))).get("oom_kill", 0)
        except OSError:
            return 0

    def cpu_usage_ns(self) -> int:
        d = self.by_controller.get("cpuacct")
        if d is None:
            return 0
        return int(_read(os.path.join(d, "cpuacct.usage")))

    def memory_peak_bytes(self) -> int:
        try:
            return int(_read(os.path.join(self.by_controller["memory"], "memory.max_usage_in_bytes")))
        except OSError:
            return 0


class V1Backend(CgroupBackend):
    version = 1
    REQUIRED = ("memory", "cpu", "pids")
    OPTIONAL = ("cpuacct",)

    def __init__(self, scope: str, mounts: dict[str, str]):
        super().__init__(scope)
        self.mounts = mounts  # controller -> hierarchy mountpoint
        self._memsw = os.path.exists(os.path.join(mounts["memory"], "memory.memsw.limit_in_bytes"))
        self._burst = os.path.exists(os.path.join(mounts["cpu"], "cpu.cfs_burst_us"))

    @classmethod
    def discover(cls, scope: str, found=None) -> "V1Backend | None":
        mounts: dict[str, str] = {}
        for fstype, mountpoint, controllers in found if found is not None else cgroup_mounts():
            if fstype != "cgroup":
                continue
            for c in cls.REQUIRED + cls.OPTIONAL:
                if c in controllers and c not in mounts:
                    mounts[c] = mountpoint
        if not all(c in mounts for c in cls.REQUIRED):
            return None
        return cls(scope, mounts)

    def _dirs(self, *parts: str) -> dict[str, str]:
        return {c: os.path.join(m, ROOT_NAME, self.scope, *parts) for c, m in self.mounts.items()}

    def scope_dirs(self) -> list[str]:
        return sorted(set(self._dirs().values()))

    def prepare(self) -> None:
        for d in self.scope_dirs():
            _makedirs_racing(d)

    def _create(self, name: str, limits: Limits) -> V1Cgroup:
        dirs = self._dirs(name)
        cg = V1Cgroup(name, dirs)
        try:
            for d in cg.dirs:
                os.mkdir(d)
            mem = dirs["memory"]
            _write(os.path.join(mem, "memory.limit_in_bytes"), str(limits.memory_bytes))
            if self._memsw:  # memory+swap = memory: the instance never swaps
                _write(os.path.join(mem, "memory.memsw.limit_in_bytes"), str(limits.memory_bytes))
            _write(os.path.join(dirs["cpu"], "cpu.cfs_period_us"), str(CPU_PERIOD_US))
            _write(os.path.join(dirs["cpu"], "cpu.cfs_quota_us"), str(limits.quota_us))
            if limits.burst_us and self._burst:
                _write(os.path.join(dirs["cpu"], "cpu.cfs_burst_us"), str(limits.burst_us))
            _write(os.path.join(dirs["pids"], "pids.max"), str(limits.pids_max))
        except OSError:
            try:
                cg.remove(timeout_s=0)
            except OSError:
                pass
            raise
        return cg

    def attach(self, name: str) -> V1Cgroup:
        return V1Cgroup(name, self._dirs(name))


# --- cgroup v2 ------------------------------------------------------------------------

class V2Cgroup(InstanceCgroup):
    weight_file = "cpu.weight"
    weight_default = b"100"
    weight_low = b"1"

    @property
    def dir(self) -> str:
        return self.dirs[0]

    def _cpu_dir(self) -> str:
        return self.dir

    def kill_all(self) -> None:
        try:
            _write(os.path.join(self.dir, "cgroup.kill"), "1")
        except OSError:
            self._kill_listed()

    def oom_kills(self) -> int:
        try:
            return _keyed(_read(os.path.join(self.dir, "memory.events"))).get("oom_kill", 0)
        except OSError:
            return 0

    def cpu_usage_ns(self) -> int:
        return _keyed(_read(os.path.join(self.dir, "cpu.stat"))).get("usage_usec", 0) * 1000

    def memory_peak_bytes(self) -> int:
        try:
            return int(_read(os.path.join(self.dir, "memory.peak")))
        except OSError:
            return 0


class V2Backend(CgroupBackend):
    version = 2
    REQUIRED = ("memory", "cpu", "pids")

    def __init__(self, scope: str, mountpoint: str):
        super().__init__(scope)
        self.mountpoint = mountpoint

    @classmethod
    def discover(cls, scope: str, found=None) -> "V2Backend | None":
        for fstype, mountpoint, controllers in found if found is not None else cgroup_mounts():
            if fstype == "cgroup2" and all(c in controllers for c in cls.REQUIRED):
                return cls(scope, mountpoint)
        return None

    def scope_dirs(self) -> list[str]:
        return [os.path.join(self.mountpoint, ROOT_NAME, self.scope)]

    def prepare(self) -> None:
        enable = " ".join(f"+{c}" for c in self.REQUIRED)
        _write(os.path.join(self.mountpoint, "cgroup.subtree_control"), enable)
        _makedirs_racing(self.scope_dirs()[0])
        for d in (os.path.join(self.mountpoint, ROOT_NAME), self.scope_dirs()[0]):
            _write(os.path.join(d, "cgroup.subtree_control"), enable)

    def _create(self, name: str, limits: Limits) -> V2Cgroup:
        d = os.path.join(self.scope_dirs()[0], name)
        cg = V2Cgroup(name, [d])
        os.mkdir(d)
        try:
            _write(os.path.join(d, "memory.max"), str(limits.memory_bytes))
            if os.path.exists(os.path.join(d, "memory.swap.max")):
                _write(os.path.join(d, "memory.swap.max"), "0")
            _write(os.path.join(d, "cpu.max"), f"{limits.quota_us} {CPU_PERIOD_US}")
            if limits.burst_us and os.path.exists(os.path.join(d, "cpu.max.burst")):
                _write(os.path.join(d, "cpu.max.burst"), str(limits.burst_us))
            _write(os.path.join(d, "pids.max"), str(limits.pids_max))
        except OSError:
            try:
                os.rmdir(d)
            except OSError:
                pass
            raise
        return cg

    def attach(self, name: str) -> V2Cgroup:
        return V2Cgroup(name, [os.path.join(self.scope_dirs()[0], name)])


def discover(scope: str, found=None) -> CgroupBackend | None:
    """The v2 backend when a v2 hierarchy has memory, cpu and pids; else v1; else None."""
    found = cgroup_mounts() if found is None else found
    return V2Backend.discover(scope, found) or V1Backend.discover(scope, found)
