"""One instance of the isolated sandbox (`IsolatedProcess`) and the table of every instance
alive (`InstanceTable`).

Ownership: an `IsolatedProcess` (one per instance, generic or not) owns the instance's pid (a
direct child of the platform, watched through a pidfd), its cgroup, its uid and the
platform's ends of its channel and output pipe; `destroy()` releases all of them and then
tells its sandbox (`on_destroyed`), which forgets it everywhere. The `InstanceTable` (one per
sandbox) lists them; the sandbox's close() destroys whatever is listed.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import socket
import time

from frazil.sandbox.base import ExitInfo, SandboxError, SandboxProcess
from frazil.sandbox.cgroups import CgroupError, InstanceCgroup
from frazil.sandbox.spawn import ChildWaiter, exit_info_from_status

log = logging.getLogger(__name__)

GENERIC_PREFIX = "generic-"  # cgroup names of generic instances (renamed to the instance id once taken)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def cgroup_name(instance_id: str) -> str:
    """The instance id itself when it is a safe directory name that cannot be taken for a
    generic instance's; else a hash of it."""
    if _SAFE_NAME.match(instance_id) and instance_id not in (".", "..") and not instance_id.startswith(GENERIC_PREFIX):
        return instance_id
    return hashlib.sha256(instance_id.encode()).hexdigest()[:32]


class IsolatedProcess(SandboxProcess):
    """One running instance. Touched only from the event loop thread."""

    def __init__(self, *, cgroup: InstanceCgroup, uid: int, on_destroyed, go_fd: int | None = None,
                 weight_fd: int | None = None, freeze_fd: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.cgroup = cgroup
        self.uid = uid
        # The cgroup's freezer control file, opened at build (None: freezing is off or the
        # machine has no freezer). `frozen` is what we last wrote; the kernel may still be
        # stopping tasks (v1 FREEZING), which is fine: nothing waits for it.
        self._freeze_fd = freeze_fd
        self.frozen = False
        # A generic instance is built with a low CPU weight (its set-up and warm-up only take
        # CPU nobody else wants); `promote()` gives it the ordinary weight when it is taken.
        self._weight_fd = weight_fd
        # Write end of the go pipe of a generic instance: its runtime reads "init" only once
        # the platform, having given it its code (handover.py), has written one byte.
        self.go_fd = go_fd
        self._on_destroyed = on_destroyed
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[ExitInfo] = self._loop.create_future()
        self._destroying: asyncio.Future[ExitInfo] | None = None
        # The platform is this pid's parent (CLONE_PARENT) and the only one who reaps it.
        self._child = ChildWaiter(self.pid, on_exit=self._on_exit)

    def _on_exit(self, status: int) -> None:
        # Read before the cgroup is removed: the kernel's own count, not a guess from SIGKILL.
        info = exit_info_from_status(status, oom_killed=self.cgroup.oom_kills() > 0)
        if not self._exited.done():
            self._exited.set_result(info)

    @property
    def pidfd(self) -> int | None:
        """Our pidfd of the runtime; None once it has exited and been reaped."""
        return self._child.pidfd

    @property
    def exited(self) -> bool:
        return self._exited.done() or self._destroying is not None

    def exit_info(self) -> ExitInfo:
        return self._exited.result() if self._exited.done() else ExitInfo()

    def on_exit(self, callback) -> None:
        """Call `callback()` (in the event loop) once the runtime has exited."""
        self._exited.add_done_callback(lambda _: callback())

    def greeted(self) -> bool:
        """Whether the runtime has sent something (its hello) that nobody has read yet."""
        try:
            return bool(self.channel.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return False

    def promote(self) -> None:
        """The ordinary CPU weight, from now on (idempotent)."""
        if self._weight_fd is not None:
            try:
                self.cgroup.set_cpu_weight(self._weight_fd, low=False)
            except OSError as exc:
                log.warning("instance %s: CPU weight not restored: %s", self.instance_id, exc)
            os.close(self._weight_fd)
            self._weight_fd = None

    def freeze(self) -> None:
        if self._freeze_fd is None or self.frozen or self.exited:
            return
        try:
            self.cgroup.set_frozen(self._freeze_fd, True)
            self.frozen = True
        except OSError as exc:  # it keeps running: no worse than without a freezer
            log.warning("instance %s: not frozen: %s", self.instance_id, exc)

    def thaw(self) -> None:
        if not self.frozen:
            return
        try:
            self.cgroup.set_frozen(self._freeze_fd, False)
            self.frozen = False
        except OSError as exc:  # stuck frozen: never hand it out (habit 6)
            log.warning("instance %s: could not be thawed, killed: %s", self.instance_id, exc)
            self.kill()

    def close_go(self) -> None:
        if self.go_fd is not None:
            os.close(self.go_fd)
            self.go_fd = None

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        """SIGKILL the runtime: it is PID 1 of its namespace, so the kernel kills the rest.
        A frozen instance is thawed once the signal is queued (on cgroup v1 a frozen task
        would hold it pending), so it dies without running anything else."""
        self._child.kill()
        if self.frozen:
            self.cgroup.thaw()
            self.frozen = False

    async def destroy(self) -> ExitInfo:
        if self._destroying is None:
            self._destroying = asyncio.ensure_future(self._destroy())
        return await asyncio.shield(self._destroying)

    async def _destroy(self) -> ExitInfo:
        started = time.perf_counter()
        self.kill()
        info = await self.wait()
        self.channel.close()
        self.close_go()
        for name in ("_weight_fd", "_freeze_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        try:
            os.close(self.output_fd)
        except OSError:
            pass
        try:
            self.cgroup.remove()
        except CgroupError as exc:  # the next start() removes it
            log.warning("instance %s: %s", self.instance_id, exc)
        self._on_destroyed(self)
        self.stats["destroy_ms"] = (time.perf_counter() - started) * 1000
        return info


class InstanceTable:
    """Every instance alive, generic or not, by cgroup name; and the instance ids in use.

    Invariants (event loop thread only): an instance is in `live` under its cgroup's current
    name from the moment it is spawned until it is destroyed; `ids` maps an instance id to
    None while a create() of that id is under way, then to its instance until it is
    destroyed. A generic instance has no id until a create() takes it."""

    def __init__(self) -> None:
        self.live: dict[str, IsolatedProcess] = {}
        self.ids: dict[str, IsolatedProcess | None] = {}

    def add(self, proc: IsolatedProcess) -> None:
        self.live[proc.cgroup.name] = proc

    def check_new_id(self, instance_id: str) -> None:
        if instance_id in self.ids or cgroup_name(instance_id) in self.live:
            raise SandboxError(f"instance {instance_id} already exists")

    def reserve(self, instance_id: str) -> None:
        """Hold `instance_id` for a create() that suspends (raises if it is taken)."""
        self.check_new_id(instance_id)
        self.ids[instance_id] = None

    def unreserve(self, instance_id: str) -> None:
        """A create() that reserved `instance_id` failed."""
        self.ids.pop(instance_id, None)

    def claim(self, proc: IsolatedProcess, instance_id: str) -> None:
        """`proc` is `instance_id`'s from now on."""
        proc.instance_id = instance_id
        self.ids[instance_id] = proc

    def remove(self, proc: IsolatedProcess) -> None:
        if self.live.get(proc.cgroup.name) is proc:
            del self.live[proc.cgroup.name]
        if self.ids.get(proc.instance_id) is proc:
            del self.ids[proc.instance_id]

    def rename_cgroup(self, proc: IsolatedProcess) -> None:
        """Give a taken generic instance's cgroup its instance's name (for operators and tools)."""
        old = proc.cgroup.name
        new = cgroup_name(proc.instance_id)
        if proc.exited or self.live.get(old) is not proc or new in self.live:
            return
        try:
            proc.cgroup.rename(new)
        except OSError as exc:
            log.debug("instance %s: cgroup %s not renamed: %s", proc.instance_id, old, exc)
        if proc.cgroup.name == new:
            self.live[new] = self.live.pop(old)
