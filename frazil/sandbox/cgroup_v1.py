"""cgroup v1: one directory per controller hierarchy (memory, cpu, pids, [cpuacct]), and one for
freezing: in the v2 hierarchy when the machine also mounts one (a "hybrid" machine, even with
no controller there), else in the v1 freezer controller's.

Why the v2 hierarchy first: a task frozen through v2's cgroup.freeze still dies from SIGKILL,
so an idle, frozen instance dies with its platform (PR_SET_PDEATHSIG) like any other. A task
frozen by the v1 freezer keeps SIGKILL pending until it is thawed: after a platform is
SIGKILLed, its frozen instances stay (frozen: no CPU, their memory held) until the next start
on its data dir removes them (`IsolatedSandbox.remove_stale`). The child starts in its v2
directory (clone3 CLONE_INTO_CGROUP, `open_clone_dir`) and joins the v1 ones itself."""
from __future__ import annotations

import os

from frazil.sandbox.cgroupfs import cgroup_mounts, keyed, makedirs_racing, read_file, write_file
from frazil.sandbox.cgroups import CPU_PERIOD_US, ROOT_NAME, CgroupBackend, InstanceCgroup, Limits


UNIFIED = "unified"  # the key of the v2 directory in V1Cgroup.by_controller and V1Backend.mounts


class V1Cgroup(InstanceCgroup):
    # The child is single-threaded when it joins, so moving its one thread ("tasks") moves
    # the whole process. The kernel lets a thread that moves itself skip the global
    # threadgroup rwsem (cgroup_procs_write_start), whose writer may wait for an RCU grace
    # period; a cgroup.procs write always takes it. On an idle machine that wait was up to
    # ~10 ms per create; under load both were ~0.2 ms at p50.
    join_file = "tasks"

    def __init__(self, name: str, dirs: dict[str, str]):
        super().__init__(name, sorted(set(dirs.values())))
        self.by_controller = dirs  # controller (or UNIFIED) -> directory
        if UNIFIED in dirs:
            self.freeze_file, self.frozen_value, self.thawed_value = "cgroup.freeze", b"1", b"0"

    def _join_dirs(self) -> list[str]:
        # The v2 directory is joined at clone (open_clone_dir), and it has no "tasks".
        unified = self.by_controller.get(UNIFIED)
        return [d for d in self.dirs if d != unified]

    def open_clone_dir(self) -> int | None:
        d = self.by_controller.get(UNIFIED)
        return None if d is None else os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    weight_file = "cpu.shares"
    weight_default = b"1024"
    weight_low = b"2"

    def _keeps_name(self, d: str) -> bool:
        # cgroup v2 refuses to rename a cgroup (EPERM): the v2 directory keeps the name it was
        # made with; the v1 ones, which operators look at, take the new one.
        return d == self.by_controller.get(UNIFIED)

    def _renamed(self, old: str, new: str) -> None:
        self.by_controller = {c: new if d == old else d for c, d in self.by_controller.items()}

    def _cpu_dir(self) -> str:
        return self.by_controller["cpu"]

    freeze_file = "freezer.state"
    frozen_value = b"FROZEN"
    thawed_value = b"THAWED"

    def _freezer_dir(self) -> str | None:
        return self.by_controller.get(UNIFIED) or self.by_controller.get("freezer")

    def kill_all(self) -> None:
        # Every process of an instance lives in its PID namespace, so killing its init
        # already takes the rest; this loop is the fallback for strays. A v1 frozen task
        # keeps SIGKILL pending until thawed: thaw after the signals are queued, so that
        # nothing runs in between but the exit.
        unified = self.by_controller.get(UNIFIED)
        if unified is not None:
            try:
                write_file(os.path.join(unified, "cgroup.kill"), "1")
            except OSError:
                pass
        self._kill_listed()
        self.thaw()

    def oom_kills(self) -> int:
        try:
            return keyed(read_file(os.path.join(self.by_controller["memory"], "memory.oom_control"))).get("oom_kill", 0)
        except OSError:
            return 0

    def cpu_usage_ns(self) -> int:
        d = self.by_controller.get("cpuacct")
        if d is None:
            return 0
        return int(read_file(os.path.join(d, "cpuacct.usage")))

    def memory_peak_bytes(self) -> int:
        try:
            return int(read_file(os.path.join(self.by_controller["memory"], "memory.max_usage_in_bytes")))
        except OSError:
            return 0


class V1Backend(CgroupBackend):
    version = 1
    REQUIRED = ("memory", "cpu", "pids")
    OPTIONAL = ("cpuacct", "freezer", "blkio")

    def __init__(self, scope: str, mounts: dict[str, str]):
        super().__init__(scope)
        self.mounts = mounts  # controller -> hierarchy mountpoint
        self._memsw = os.path.exists(os.path.join(mounts["memory"], "memory.memsw.limit_in_bytes"))
        self._burst = os.path.exists(os.path.join(mounts["cpu"], "cpu.cfs_burst_us"))

    @classmethod
    def discover(cls, scope: str, found=None) -> "V1Backend | None":
        mounts: dict[str, str] = {}
        for fstype, mountpoint, controllers in found if found is not None else cgroup_mounts():
            if fstype == "cgroup2" and UNIFIED not in mounts:
                mounts[UNIFIED] = mountpoint  # freezing: see the module's docstring
            if fstype != "cgroup":
                continue
            for c in cls.REQUIRED + cls.OPTIONAL:
                if c in controllers and c not in mounts:
                    mounts[c] = mountpoint
        if not all(c in mounts for c in cls.REQUIRED):
            return None
        if UNIFIED in mounts:
            mounts.pop("freezer", None)
        return cls(scope, mounts)

    def limits_io(self) -> bool:
        return "blkio" in self.mounts

    def _dirs(self, *parts: str) -> dict[str, str]:
        return {c: os.path.join(m, ROOT_NAME, self.scope, *parts) for c, m in self.mounts.items()}

    def scope_dirs(self) -> list[str]:
        return sorted(set(self._dirs().values()))

    # An empty cgroup of the scope kept frozen while the platform runs. The v1 freezer turns
    # a kernel static key on when a first cgroup starts freezing and off when the last one
    # thaws, and flipping it patches kernel text on every CPU (costly, machine-wide); with
    # the anchor frozen the key stays on, and each instance's freeze or thaw is one cheap
    # write. The name is one `cgroup_name` never gives (it hashes names with "@").
    FREEZER_ANCHOR = "@freezer-anchor"

    def prepare(self) -> None:
        for d in self.scope_dirs():
            makedirs_racing(d)
        if "freezer" in self.mounts:
            anchor = self._anchor_dir()
            try:
                os.mkdir(anchor)
            except FileExistsError:
                pass
            write_file(os.path.join(anchor, "freezer.state"), "FROZEN")

    def _anchor_dir(self) -> str:
        return os.path.join(self._dirs()["freezer"], self.FREEZER_ANCHOR)

    def instance_names(self) -> list[str]:
        return [name for name in super().instance_names() if name != self.FREEZER_ANCHOR]

    def remove_empty_scopes(self) -> int:
        # A dead platform's scope still holds its anchor: take that out first. (A live
        # platform whose anchor goes only pays the slower freezes until its next prepare.)
        if "freezer" in self.mounts:
            root = os.path.dirname(os.path.dirname(self._anchor_dir()))
            try:
                scopes = [e.path for e in os.scandir(root) if e.is_dir(follow_symlinks=False) and e.name != self.scope]
            except FileNotFoundError:
                scopes = []
            for scope_dir in scopes:
                _remove_anchor(os.path.join(scope_dir, self.FREEZER_ANCHOR))
        return super().remove_empty_scopes()

    def remove_scope(self) -> None:
        if "freezer" in self.mounts:
            _remove_anchor(self._anchor_dir())
        super().remove_scope()

    def _create(self, name: str, limits: Limits) -> V1Cgroup:
        dirs = self._dirs(name)
        cg = V1Cgroup(name, dirs)
        try:
            for d in cg.dirs:
                os.mkdir(d)
            mem = dirs["memory"]
            write_file(os.path.join(mem, "memory.limit_in_bytes"), str(limits.memory_bytes))
            if self._memsw:  # memory+swap = memory: the instance never swaps
                write_file(os.path.join(mem, "memory.memsw.limit_in_bytes"), str(limits.memory_bytes))
            write_file(os.path.join(dirs["cpu"], "cpu.cfs_period_us"), str(CPU_PERIOD_US))
            write_file(os.path.join(dirs["cpu"], "cpu.cfs_quota_us"), str(limits.quota_us))
            if limits.burst_us and self._burst:
                write_file(os.path.join(dirs["cpu"], "cpu.cfs_burst_us"), str(limits.burst_us))
            write_file(os.path.join(dirs["pids"], "pids.max"), str(limits.pids_max))
            if "blkio" in dirs:
                # v1 throttles what is submitted in the instance's own context: reads that
                # miss the page cache and direct writes (buffered writeback is the flusher's).
                for device in limits.io_devices:
                    for name, bps in (("read", limits.io_read_bps), ("write", limits.io_write_bps)):
                        if bps > 0:
                            write_file(os.path.join(dirs["blkio"], f"blkio.throttle.{name}_bps_device"),
                                       f"{device} {bps}")
        except OSError:
            try:
                cg.remove(timeout_s=0)
            except OSError:
                pass
            raise
        return cg

    def attach(self, name: str) -> V1Cgroup:
        return V1Cgroup(name, self._dirs(name))


def _remove_anchor(path: str) -> None:
    """Thaw and remove a freezer anchor (it holds no process); never raises."""
    try:
        write_file(os.path.join(path, "freezer.state"), "THAWED")
        os.rmdir(path)
    except OSError:
        pass
