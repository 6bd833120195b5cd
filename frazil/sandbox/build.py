"""Building one instance from a `BuildPlan`: with its code (exec'd by the launcher, the child
mounts the code itself) or generic (its code attached later: `frazil.sandbox.handover`).

The steps, in order (the child's own, from clone to exec, are in
`frazil.sandbox.helper.enter.launch`):
  1. a uid from the sandbox's block;
  2. the cgroup dirs with the shape's limits, their join files opened (and, for an instance
     built ahead of time, its CPU weight set low until it is taken);
  3. the socketpair, the output, error and (zygote child) go pipes, and (an instance built on
     demand) a network namespace made ahead of time, if one is ready (`_Wiring`);
  4. the launcher clones a child that execs the runtime, or the zygote forks one, with
     CLONE_PARENT: the child is the platform's; the descriptors meant for it are sent along
     and our copies closed;
  5. the error pipe reaching EOF without a message means the child is sandboxed (and,
     exec'd, running its runtime). What the caller reads next on the channel is the
     runtime's "hello".
Error policy: a failure at any step gives back everything taken so far (a child already
cloned is killed with its cgroup and reaped) and raises SandboxError; an instance whose
set-up failed is destroyed, never returned.
"""
from __future__ import annotations

import asyncio
import os
import resource
import socket
import time
from dataclasses import dataclass
from typing import Callable

from frazil.sandbox.base import InstanceShape, RuntimePaths, SandboxError
from frazil.sandbox.cgroups import CgroupBackend, InstanceCgroup, Limits
from frazil.sandbox.helper import rootfs
from frazil.sandbox.instance import IsolatedProcess
from frazil.sandbox.launcher_client import LauncherError
from frazil.sandbox.netns import NetnsPool
from frazil.sandbox.spawn import ChildWaiter
from frazil.sandbox.supervisor import RUNTIME_ENV, LauncherSupervisor
from frazil.sandbox.uids import UidPool
from frazil.settings import MB

CPU_TIME_LIMIT_S = 4 * 3600  # RLIMIT_CPU: generous, an instance lives across many invocations
OPEN_FILES_LIMIT = 4096
SETUP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class BuildPlan:
    """One instance to build.

    `code_dir` given: the launcher clones a child that mounts the code and layers and execs
    the runtime. `code_dir` None: a generic instance, whose code the platform attaches later.
    `by_zygote`: forked by the Python zygote instead (always generic: the zygote cannot see
    host paths). A go pipe (`go`) for a zygote child and for a generic instance of a runtime
    that waits for one (Node, started with `GENERIC_FLAG` in `argv`): the runtime reads
    "init" only after the launcher has attached the code and written the go byte. `ahead_of_time`: built for the pre-built pool
    - a zygote child runs the loop once before it says hello (see zygote_child.warm_up), and the
    instance has the lowest CPU weight until `promote()`, so that its set-up does not slow
    down the cold starts running meanwhile."""

    shape: InstanceShape
    name: str  # its cgroup's
    argv: list[str]
    code_dir: str | None = None
    layer_dirs: tuple[str, ...] = ()
    by_zygote: bool = False
    ahead_of_time: bool = False
    layers_first: bool = False  # a zygote child that imports its layers before its hello (layer_ready.py)

    def __post_init__(self) -> None:
        if self.by_zygote and self.code_dir is not None:
            raise ValueError("a zygote child gets its code from the platform, after it is built")
        if self.layers_first and not self.by_zygote:
            raise ValueError("only a zygote child imports layers before its code")

    @property
    def go(self) -> bool:
        return self.by_zygote or (self.code_dir is None and self.shape.runtime.generic_awaits_go)


class InstanceBuilder:
    """Builds instances for one sandbox (see the module's docstring). Event loop thread only."""

    def __init__(self, cgroups: CgroupBackend, uids: UidPool, supervisor: LauncherSupervisor, *,
                 on_spawned: Callable[[IsolatedProcess], None], on_destroyed: Callable[[IsolatedProcess], None],
                 freeze_idle: bool = True, netns: NetnsPool | None = None):
        self._cgroups = cgroups
        # Network namespaces made ahead of time, for instances built on demand (a cold start
        # waits for those); one built ahead of time clones its own, nobody waits for it.
        self._netns = netns
        self._freeze_idle = freeze_idle  # open each instance's freezer file (it can be frozen when idle)
        # Disk bandwidth of every instance: (read B/s, write B/s, "MAJ:MIN" disks); set by the
        # sandbox's start, once it knows which disks hold what instances read.
        # Disk bandwidth limits (set by the sandbox's start): the disks they apply to, and the
        # (read, write) bytes per second of an instance by its memory tier (absent: unlimited).
        self.io_devices: tuple[str, ...] = ()
        self.io_bps: dict[int, tuple[int, int]] = {}
        self._uids = uids
        self._supervisor = supervisor
        self._on_spawned = on_spawned  # the sandbox lists it (and so destroys it at close) from here on
        self._on_destroyed = on_destroyed

    async def build(self, plan: BuildPlan) -> IsolatedProcess:
        shape = plan.shape
        started = time.perf_counter()
        try:
            uid = self._uids.acquire()
        except RuntimeError as exc:
            raise SandboxError(str(exc)) from None
        cg: InstanceCgroup | None = None
        wiring: _Wiring | None = None
        weight_fd: int | None = None
        freeze_fd: int | None = None
        try:
            try:
                read_bps, write_bps = self.io_bps.get(shape.memory_mb, (0, 0))
                cg = self._cgroups.create(plan.name, Limits(shape.memory_mb * MB, shape.cpu, shape.pids_max,
                                                            io_read_bps=read_bps, io_write_bps=write_bps,
                                                            io_devices=self.io_devices))
            except FileExistsError:
                raise SandboxError(f"a cgroup named {plan.name} already exists") from None
            if plan.ahead_of_time:
                weight_fd = cg.open_cpu_weight()
                cg.set_cpu_weight(weight_fd, low=True)
            if self._freeze_idle and cg.can_freeze():
                freeze_fd = cg.open_freeze()
            join_fds = cg.open_procs()
            try:
                clone_dir = cg.open_clone_dir()
            except OSError:
                for fd in join_fds:
                    os.close(fd)
                raise
            netns_fd = None if plan.ahead_of_time or self._netns is None else self._netns.take()
            wiring = _Wiring(join_fds, go=plan.go, netns=netns_fd, cgroup_dir=clone_dir)
            cgroup_done = time.perf_counter()
            request = {
                "argv": plan.argv, "env": RUNTIME_ENV, "uid": uid, "gid": uid, "code_dir": plan.code_dir,
                "layer_dirs": list(plan.layer_dirs), "tmp_mb": shape.tmp_mb, "rlimits": rlimits(shape.tmp_mb),
                "go": plan.go, "netns": netns_fd is not None, "cgroup_dir": clone_dir is not None,
            }
            launcher = await self._supervisor.running()
            if plan.by_zygote:
                pid = await launcher.zygote_spawn({**request, "warm": plan.ahead_of_time,
                                                   "layers_first": plan.layers_first}, wiring.child_fds())
            else:
                pid = await launcher.spawn(request, wiring.child_fds())
        except (OSError, LauncherError, SandboxError) as exc:
            for fd in (weight_fd, freeze_fd):
                if fd is not None:
                    os.close(fd)
            if wiring is not None:
                wiring.close_all()
            if cg is not None:
                # A helper that died mid-request may still have cloned the child: it is
                # ours (CLONE_PARENT) and in this cgroup, so kill it and reap it here.
                strays = cg.pids()
                try:
                    cg.remove(timeout_s=1.0)
                except OSError:
                    pass
                _reap(strays)
            self._uids.release(uid)
            if isinstance(exc, SandboxError):
                raise
            raise SandboxError(f"could not start {shape.runtime.name} in the sandbox: {exc}") from exc
        wiring.close_child_ends()
        spawned = time.perf_counter()
        proc = IsolatedProcess(
            instance_id=plan.name, pid=pid, channel=wiring.channel, output_fd=wiring.output_r,
            paths=RuntimePaths(rootfs.CODE_DIR, (), rootfs.TMP_DIR),
            cgroup=cg, uid=uid, on_destroyed=self._on_destroyed, go_fd=wiring.go_w, weight_fd=weight_fd,
            freeze_fd=freeze_fd,
        )
        self._on_spawned(proc)
        error = await _setup_error(wiring.error_r)
        if error:
            info = await proc.destroy()
            raise SandboxError(f"could not start {shape.runtime.name} in the sandbox: {error} ({info.describe()})")
        now = time.perf_counter()
        proc.stats.update(cgroup_ms=(cgroup_done - started) * 1000, spawn_ms=(spawned - cgroup_done) * 1000,
                          exec_ms=(now - spawned) * 1000, uid=uid,
                          netns="made ahead" if netns_fd is not None else "cloned")
        return proc


def rlimits(tmp_mb: int) -> list[tuple[int, int, int]]:
    """The rlimits of an instance with a /tmp of `tmp_mb`, each within what this process may set."""
    file_size = (tmp_mb + 1) * MB  # a little over /tmp: a full /tmp answers ENOSPC, not SIGXFSZ
    return [_within_our_hard_limit(*limit) for limit in (
        (resource.RLIMIT_CPU, CPU_TIME_LIMIT_S, CPU_TIME_LIMIT_S + 5),
        (resource.RLIMIT_FSIZE, file_size, file_size),
        (resource.RLIMIT_NOFILE, OPEN_FILES_LIMIT, OPEN_FILES_LIMIT),
        (resource.RLIMIT_CORE, 0, 0),
    )]


def _within_our_hard_limit(res: int, soft: int, hard: int) -> tuple[int, int, int]:
    # The instance's setrlimit may lower a hard limit but not raise it past ours (no
    # CAP_SYS_RESOURCE where it runs): under `ulimit -n 1024` asking for 4096 failed every start.
    ours = resource.getrlimit(res)[1]
    if ours != resource.RLIM_INFINITY and hard > ours:
        hard = ours
    return res, min(soft, hard), hard


class _Wiring:
    """The descriptors between the platform and one instance, until the child has them.

    Ours: the channel, the output pipe's read end, the error pipe's read end, the go pipe's
    write end (if asked for). The child's, sent to the launcher or the zygote and closed here
    once sent: the other channel end, the output pipe's write end, the error pipe's write end,
    the go pipe's read end, the network namespace and the cgroup directory (if given: they
    are ours from here on) and the cgroup join descriptors."""

    def __init__(self, cgroup_fds: list[int], go: bool = False, netns: int | None = None,
                 cgroup_dir: int | None = None):
        made: list = []
        self.go_w: int | None = None
        try:
            self.channel, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            made += [self.channel, self._theirs]
            self.output_r, output_w = os.pipe()
            made += [self.output_r, output_w]
            self.error_r, error_w = os.pipe()
            made += [self.error_r, error_w]
            if go:
                go_r, self.go_w = os.pipe2(os.O_CLOEXEC)
                made += [go_r, self.go_w]
        except OSError:  # e.g. out of descriptors: give back what was taken, cgroup fds too
            for item in made:
                item.close() if isinstance(item, socket.socket) else os.close(item)
            for fd in cgroup_fds + [fd for fd in (netns, cgroup_dir) if fd is not None]:
                os.close(fd)
            raise
        self._child_head = ([self._theirs.fileno(), output_w, error_w] + ([go_r] if go else [])
                            + [fd for fd in (netns, cgroup_dir) if fd is not None])
        self._child = list(cgroup_fds)

    def child_fds(self) -> list[int]:
        """In the order the helpers expect: channel, output, error, [go], [netns], [cgroup dir],
        cgroup joins."""
        return self._child_head + self._child

    def close_child_ends(self) -> None:
        self._theirs.close()
        for fd in self._child_head[1:] + self._child:
            os.close(fd)
        self._child_head, self._child = [], []
        self.channel.setblocking(False)
        os.set_blocking(self.output_r, False)

    def close_all(self) -> None:
        self.close_child_ends()
        self.channel.close()
        os.close(self.output_r)
        os.close(self.error_r)
        if self.go_w is not None:
            os.close(self.go_w)


async def _setup_error(err_r: int) -> str:
    """Wait for the error pipe: EOF alone means the runtime was exec'd."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    chunks: list[bytes] = []

    def readable() -> None:
        try:
            data = os.read(err_r, 4096)
        except BlockingIOError:
            return
        if data:
            chunks.append(data)
        elif not done.done():
            done.set_result(None)

    os.set_blocking(err_r, False)
    loop.add_reader(err_r, readable)
    try:
        await asyncio.wait_for(done, SETUP_TIMEOUT_S)
    except asyncio.TimeoutError:
        chunks.append(f"the sandbox was not ready within {SETUP_TIMEOUT_S:g} s".encode())
    finally:
        loop.remove_reader(err_r)
        os.close(err_r)
    return b"".join(chunks).decode(errors="replace")


def _reap(pids: set[int]) -> None:
    """Reap killed children of ours when they are gone."""
    for pid in pids:
        try:
            ChildWaiter(pid)  # the event loop's reader keeps it until the child is reaped
        except OSError:  # gone and reaped already
            continue
