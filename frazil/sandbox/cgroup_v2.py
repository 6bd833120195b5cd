"""cgroup v2: one directory in the unified hierarchy."""
from __future__ import annotations

import errno
import os

from frazil.sandbox.cgroupfs import cgroup_mounts, keyed, makedirs_racing, read_file, write_file
from frazil.sandbox.cgroups import CPU_PERIOD_US, ROOT_NAME, CgroupBackend, CgroupError, InstanceCgroup, Limits

# The leaf cgroup that the processes of the hierarchy's root move to when the root may not keep
# them (see V2Backend._enable_at_root): in a container, the container's own processes.
PLATFORM_LEAF = "frazil-platform"


class V2Cgroup(InstanceCgroup):
    weight_file = "cpu.weight"
    weight_default = b"100"
    weight_low = b"1"

    @property
    def dir(self) -> str:
        return self.dirs[0]

    def _cpu_dir(self) -> str:
        return self.dir

    # Every non-root v2 cgroup has cgroup.freeze; no controller needs enabling.
    freeze_file = "cgroup.freeze"
    frozen_value = b"1"
    thawed_value = b"0"

    def _freezer_dir(self) -> str | None:
        return self.dir

    def kill_all(self) -> None:
        # SIGKILL reaches a v2 frozen task (it leaves the frozen state to die); the thaw
        # is for the cgroup's own state only.
        try:
            write_file(os.path.join(self.dir, "cgroup.kill"), "1")
        except OSError:
            self._kill_listed()
        self.thaw()

    def oom_kills(self) -> int:
        try:
            return keyed(read_file(os.path.join(self.dir, "memory.events"))).get("oom_kill", 0)
        except OSError:
            return 0

    def cpu_usage_ns(self) -> int:
        return keyed(read_file(os.path.join(self.dir, "cpu.stat"))).get("usage_usec", 0) * 1000

    def memory_peak_bytes(self) -> int:
        try:
            return int(read_file(os.path.join(self.dir, "memory.peak")))
        except OSError:
            return 0


class V2Backend(CgroupBackend):
    version = 2
    REQUIRED = ("memory", "cpu", "pids")
    OPTIONAL = ("io",)

    def __init__(self, scope: str, mountpoint: str, controllers: set[str] | None = None):
        super().__init__(scope)
        self.mountpoint = mountpoint
        # enabled for frazil's subtree: the required ones, and the optional ones the mount has
        self.controllers = set(self.REQUIRED) | {c for c in self.OPTIONAL if c in (controllers or ())}

    @classmethod
    def discover(cls, scope: str, found=None) -> "V2Backend | None":
        for fstype, mountpoint, controllers in found if found is not None else cgroup_mounts():
            if fstype == "cgroup2" and all(c in controllers for c in cls.REQUIRED):
                return cls(scope, mountpoint, controllers)
        return None

    def limits_io(self) -> bool:
        return "io" in self.controllers

    def scope_dirs(self) -> list[str]:
        return [os.path.join(self.mountpoint, ROOT_NAME, self.scope)]

    def prepare(self) -> None:
        enable = " ".join(f"+{c}" for c in sorted(self.controllers))
        self._enable_at_root(enable)
        makedirs_racing(self.scope_dirs()[0])
        for d in (os.path.join(self.mountpoint, ROOT_NAME), self.scope_dirs()[0]):
            write_file(os.path.join(d, "cgroup.subtree_control"), enable)

    def _enable_at_root(self, enable: str, attempts: int = 3) -> None:
        """Hand the controllers in `enable` to the children of the hierarchy's root.

        cgroup v2 lets a cgroup enable controllers for its children only while no process lives
        in it (the "no internal processes" rule: the write fails with EBUSY). The real root is
        exempt, so on a host or a VM the first write succeeds. In a container with its own cgroup
        namespace the root we see is the container's cgroup, where its processes live (this
        platform among them): they move to the leaf PLATFORM_LEAF first, as container runtimes
        do when they nest, and the write is tried again. A process started in the root
        meanwhile (an `exec` into the container) makes it fail once more: a few attempts."""
        path = os.path.join(self.mountpoint, "cgroup.subtree_control")
        for attempt in range(attempts):
            try:
                write_file(path, enable)
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                if attempt == attempts - 1:
                    raise CgroupError(errno.EBUSY, f"cannot enable controllers in {self.mountpoint}: processes stay "
                                      "there (cgroup v2 allows none in a cgroup that hands controllers to its "
                                      f"children) although they were moved to {PLATFORM_LEAF}") from None
            try:
                self._move_root_processes()
            except OSError as exc:
                raise CgroupError(exc.errno, f"cannot enable controllers in {self.mountpoint}: it holds processes "
                                  f"(cgroup v2 allows none there) and moving them to {PLATFORM_LEAF} failed: "
                                  f"{exc.strerror}") from None

    def _move_root_processes(self) -> None:
        """Move every process of the hierarchy's root into PLATFORM_LEAF (made if missing)."""
        leaf = os.path.join(self.mountpoint, PLATFORM_LEAF)
        os.makedirs(leaf, exist_ok=True)
        for pid in read_file(os.path.join(self.mountpoint, "cgroup.procs")).split():
            if pid == "0":  # one outside our PID namespace (and writing "0" would move this process)
                continue
            try:
                write_file(os.path.join(leaf, "cgroup.procs"), pid)
            except ProcessLookupError:  # exited since the listing
                pass

    def _create(self, name: str, limits: Limits) -> V2Cgroup:
        d = os.path.join(self.scope_dirs()[0], name)
        cg = V2Cgroup(name, [d])
        os.mkdir(d)
        try:
            write_file(os.path.join(d, "memory.max"), str(limits.memory_bytes))
            if os.path.exists(os.path.join(d, "memory.swap.max")):
                write_file(os.path.join(d, "memory.swap.max"), "0")
            write_file(os.path.join(d, "cpu.max"), f"{limits.quota_us} {CPU_PERIOD_US}")
            if limits.burst_us and os.path.exists(os.path.join(d, "cpu.max.burst")):
                write_file(os.path.join(d, "cpu.max.burst"), str(limits.burst_us))
            write_file(os.path.join(d, "pids.max"), str(limits.pids_max))
            if "io" in self.controllers and (limits.io_read_bps or limits.io_write_bps):
                rbps, wbps = (str(v) if v > 0 else "max" for v in (limits.io_read_bps, limits.io_write_bps))
                for device in limits.io_devices:
                    write_file(os.path.join(d, "io.max"), f"{device} rbps={rbps} wbps={wbps}")
        except OSError:
            try:
                os.rmdir(d)
            except OSError:
                pass
            raise
        return cg

    def attach(self, name: str) -> V2Cgroup:
        return V2Cgroup(name, [os.path.join(self.scope_dirs()[0], name)])
