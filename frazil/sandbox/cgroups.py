"""Per-instance cgroups, on cgroup v2 or v1, behind one small interface.

Layout: <hierarchy>/frazil/<scope>/<instance>, where `scope` names one platform (a hash of
its data dir) so two servers on one machine only ever clean up their own instances.

An instance cgroup carries the tier's memory limit (swap off), its CPU quota, a pids limit
and, where the machine has the blkio (v1) or io (v2) controller, a disk bandwidth limit on
each disk holding what an instance can read (`frazil.sandbox.disks`: the root's binds, code
and layers; /tmp is memory). Only I/O that reaches a disk is slowed: a read served from the
page cache is not, nor, on v1, buffered writeback (the flusher's, not the instance's). When
the machine has a freezer the cgroup can also be frozen: an idle instance is stopped
between invocations, so that nothing it left running (a thread, a child) spends CPU or does
I/O while nobody uses it. The sandboxed child joins it by writing "0" to `cgroup.procs`
descriptors that the platform opened ahead of time (one per hierarchy), so the child needs
no path and no lookup. `oom_kills()` reads the kernel's own count of OOM kills, which is
how an exit is told apart from any other SIGKILL.

Invariants: only the platform that owns a scope creates or removes cgroups below it; a
cgroup is removed only once it has no process left (the kernel refuses otherwise); a
cgroup that is killed is thawed right after (`kill_all`): on v1 a frozen task does not
act on SIGKILL until it is thawed, so a frozen cgroup would never empty.

This module is the interface (and what both versions share); the implementations are
`frazil.sandbox.cgroup_v2` and `frazil.sandbox.cgroup_v1`, and `frazil.sandbox.probe.discover`
picks one.
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

from frazil.sandbox.cgroupfs import read_file, write_file

ROOT_NAME = "frazil"
CPU_PERIOD_US = 100_000


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
    # Disk bandwidth, bytes per second (0: unlimited), on each of `io_devices` ("MAJ:MIN" of
    # whole disks); applied only where the backend has the blkio (v1) or io (v2) controller.
    io_read_bps: int = 0
    io_write_bps: int = 0
    io_devices: tuple[str, ...] = ()

    @property
    def quota_us(self) -> int:
        return max(1000, int(self.cpu * CPU_PERIOD_US))

    @property
    def burst_us(self) -> int:
        return int(self.quota_us * self.burst_periods)


def scope_for(data_dir: Path) -> str:
    """A short stable name for one platform's data dir."""
    return hashlib.sha256(os.fsencode(os.path.realpath(data_dir))).hexdigest()[:12]


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
            for d in self._join_dirs():
                fds.append(os.open(os.path.join(d, self.join_file), os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def _join_dirs(self) -> list[str]:
        """The directories a child joins by writing to `join_file` (all of them, by default)."""
        return self.dirs

    def open_clone_dir(self) -> int | None:
        """A descriptor of the cgroup v2 directory the child is cloned into (clone3
        CLONE_INTO_CGROUP), or None when it joins every directory through `open_procs`."""
        return None

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                found.update(int(x) for x in read_file(os.path.join(d, "cgroup.procs")).split())
            except FileNotFoundError:
                pass
        return found

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs)

    def rename(self, new_name: str) -> None:
        """Rename the directories (processes, limits and open join descriptors stay as they
        are). Raises OSError; the directories renamed before the error keep the new name.
        A directory the kernel cannot rename (`_keeps_name`) keeps its own."""
        for i, d in enumerate(self.dirs):
            if self._keeps_name(d):
                continue
            target = os.path.join(os.path.dirname(d), new_name)
            os.rename(d, target)
            self.dirs[i] = target
            self._renamed(d, target)
        self.name = new_name

    def _renamed(self, old: str, new: str) -> None:
        """Hook for subclasses that index their directories."""

    def _keeps_name(self, d: str) -> bool:
        """Whether directory `d` is never renamed."""
        return False

    @abc.abstractmethod
    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup, then thaw it (best effort, never raises)."""

    # The freezer: `freeze_file` in `_freezer_dir()`, written `frozen_value` or `thawed_value`.
    freeze_file: str = ""
    frozen_value: bytes = b""
    thawed_value: bytes = b""

    def can_freeze(self) -> bool:
        return self._freezer_dir() is not None

    def open_freeze(self) -> int:
        """A descriptor to freeze and thaw through (`set_frozen`), opened ahead so that each is
        one write on the warm path. Raises OSError (e.g. no freezer on this machine)."""
        d = self._freezer_dir()
        if d is None:
            raise CgroupError(errno.ENOENT, f"cgroup {self.name} has no freezer")
        return os.open(os.path.join(d, self.freeze_file), os.O_WRONLY | os.O_CLOEXEC)

    def set_frozen(self, fd: int, frozen: bool) -> None:
        """Freeze or thaw the whole cgroup (raises OSError). Neither waits for the kernel to
        finish: a freeze stops each task at its next return to user space or freezable
        sleep; a thaw lets every task run again."""
        os.write(fd, self.frozen_value if frozen else self.thawed_value)

    def thaw(self) -> None:
        """Thaw through the path (clean-up; never raises)."""
        d = self._freezer_dir()
        if d is not None:
            try:
                write_file(os.path.join(d, self.freeze_file), self.thawed_value.decode())
            except OSError:
                pass

    @abc.abstractmethod
    def _freezer_dir(self) -> str | None:
        """The directory holding the freezer's control file (None: no freezer)."""

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

    def limits_io(self) -> bool:
        """Whether this machine's cgroups can limit disk bandwidth (blkio or io controller)."""
        return False

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
