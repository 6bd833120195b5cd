"""The lightweight container: instances in namespaces, cgroups, seccomp and Landlock.

`IsolatedSandbox` (one per platform) is the façade: it chooses how to make each instance and
ties together the parts that each do one job:
  hostpaths.HostPaths            the layout shown inside; checks and resolves a spec's paths
  supervisor.LauncherSupervisor  the launcher and the Python zygote, restarted if they died
  build.InstanceBuilder          builds one instance from a BuildPlan
  handover.Handover              gives a generic instance its function's code
  prebuilt.GenericPool           generic instances built ahead of time, per shape
  layer_ready.LayerReady         Python ones that imported a dependency layer ahead, per layer
  instance.InstanceTable         every instance alive (close() destroys them all)
  netns.NetnsPool                network namespaces made ahead of time (for instances built
                                 on demand; one built ahead of time makes its own)
It also owns the cgroup scope <hierarchy>/frazil/<scope>/ and the uid block.

Creating one instance (`create`), fastest path first (`CreatePath`):
  layer     (Python with layers, when `sandbox_layer_prebuilt_mb`) a generic instance that has
            its layers and imported their packages is ready: it is given its code alone.
  prebuilt  a generic instance of the spec's shape (runtime + tier limits) is ready: it is
            given its code (`handover`); it waits for its go byte before reading "init"
            (a zygote child, a Node runtime), so create() returns without waiting.
  zygote    (Python, none ready) the zygote forks a generic instance now, which is given
            its code as above. A create that fails because the launcher or the zygote died
            is retried once on new ones.
  exec      (Node, none ready; or Python without a zygote) the launcher clones a child that
            enters the sandbox with the code mounted and execs the runtime.
Whatever the path, the caller of create() reads the runtime's "hello" itself, after
create() returns: a runtime may have said it already (a pre-built or zygote instance), or
say it later (an exec'd one).

Which shapes to keep ready is the caller's policy (`keep_ready`, e.g. the instance pool
keeps every tier's Python shape); a shape that create() sees is also kept ready for a while
(`GenericPool.used`).
"""
from __future__ import annotations

import asyncio
import enum
import logging
import os
import secrets
import time
from pathlib import Path

from frazil.runtimes import RuntimeKind
from frazil.sandbox import disks
from frazil.sandbox.base import InstanceShape, RuntimePaths, Sandbox, SandboxError, SandboxSpec, SandboxUnavailable
from frazil.sandbox.build import BuildPlan, InstanceBuilder
from frazil.sandbox.cgroups import CgroupBackend, Limits, scope_for
from frazil.sandbox.handover import Handover
from frazil.sandbox.helper import rootfs
from frazil.sandbox.hostpaths import HostPaths
from frazil.sandbox.instance import GENERIC_PREFIX, InstanceTable, IsolatedProcess, cgroup_name
from frazil.sandbox.layer_ready import LayerReady
from frazil.sandbox.launcher_client import LauncherClient
from frazil.sandbox.netns import NetnsPool
from frazil.sandbox.prebuilt import GenericPool
from frazil.sandbox.probe import ProbeResult, probe
from frazil.sandbox.supervisor import LauncherSupervisor
from frazil.sandbox.uids import UidPool
from frazil.settings import MB, Settings

log = logging.getLogger(__name__)

GENERIC_CAP = 64  # generic instances at most, over all shapes (and sandbox_prebuilt_memory_mb)
# Memory one generic instance holds before it is given code, rounded up from its cgroup's
# charge (measured on Node 20 / Python 3.11: ~6.8 MB for a Node runtime that warmed up and
# said hello, ~2.7 MB for a zygote child): what `sandbox_prebuilt_memory_mb` is counted in.
GENERIC_COST_MB = {"python": 3.0, "node": 8.0}
REFILL_DELAY_S = 0.02  # a taken generic instance is replaced this much later (off the critical path)
IO_PROBE_CGROUP = "@io-probe"  # a name cgroup_name() never gives (see instance.cgroup_name)
RENAME_DELAY_S = 0.05  # ...and its cgroup renamed to the instance id (not on the critical path)


class CreatePath(enum.Enum):
    """How an instance was made (`proc.stats["path"]` holds the value)."""

    LAYER = "layer"
    PREBUILT = "prebuilt"
    ZYGOTE = "zygote"
    EXEC = "exec"


class IsolatedSandbox(Sandbox):
    name = "isolated"
    own_network = True  # every instance has its own namespace, made ahead or cloned (netns.py)

    def __init__(self, settings: Settings, probed: ProbeResult, scope: str):
        self.settings = settings
        self.scope = scope
        self.probed = probed
        self.cgroups: CgroupBackend = probed.cgroups
        self.uids = UidPool(scope)
        self.paths = HostPaths(Path(os.path.realpath(settings.data_dir)))
        self.supervisor = LauncherSupervisor(settings.sandbox_zygote)
        self.table = InstanceTable()
        self.netns = NetnsPool()
        self.builder = InstanceBuilder(self.cgroups, self.uids, self.supervisor,
                                       on_spawned=self.table.add, on_destroyed=self._forget,
                                       freeze_idle=settings.sandbox_freeze_idle, netns=self.netns)
        self.handover = Handover(self.supervisor.template_roots)
        self.generics = GenericPool(self._build_generic, cap=GENERIC_CAP, delay_s=REFILL_DELAY_S,
                                    idle_ttl_s=settings.keep_alive_s, window_s=settings.sandbox_prebuilt_window_s,
                                    budget_mb=settings.sandbox_prebuilt_memory_mb,
                                    cost_mb=lambda shape: GENERIC_COST_MB[shape.runtime.language])
        self.layer_ready = LayerReady(settings, self._build_generic, self.handover, self.paths, REFILL_DELAY_S)
        self._closing = False

    @classmethod
    def probe_and_create(cls, settings: Settings) -> "IsolatedSandbox":
        """The sandbox if this machine can run it; else SandboxUnavailable naming what is missing."""
        scope = scope_for(settings.data_dir)
        probed = probe(scope)
        if not probed.ok:
            raise SandboxUnavailable(probed.message())
        for note in probed.notes:
            log.info("isolated sandbox: %s", note)
        return cls(settings, probed, scope)

    @property
    def started(self) -> bool:
        """start() has laid out the root (its launcher may have failed to start)."""
        return self.paths.layout is not None

    @property
    def launcher(self) -> LauncherClient | None:
        """The current launcher (it may have died: the next create() replaces it)."""
        return self.supervisor.launcher

    # --- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        removed = self.remove_stale()
        if removed:
            log.info("isolated sandbox: removed %d instance(s) left by a previous run", removed)
        self.cgroups.remove_empty_scopes()
        self.cgroups.prepare()
        layout = self.paths.prepare()
        self._limit_io(layout)
        await self.supervisor.start(layout, str(self.paths.mountpoint))
        self.handover.start()
        self.netns.start()
        self.generics.start()
        self.layer_ready.pool.start()

    def _limit_io(self, layout) -> None:
        """Give every instance built from now on its tier's disk bandwidth limits, on the disks
        that hold what it can read (the root's binds, the data dir with code and layers)."""
        per_tier = {mb: (tier.io_read_bps, tier.io_write_bps) for mb, tier in self.settings.tiers.items()}
        read_bps, write_bps = (max(bps) for bps in zip(*per_tier.values()))
        if not (read_bps or write_bps):
            return
        if not self.cgroups.limits_io():
            log.info("isolated sandbox: no blkio/io cgroup controller here: disk bandwidth is not limited")
            return
        found = disks.backing_disks(["/", str(self.settings.data_dir), *(host for host, _ in layout.ro_binds)])
        for note in found.notes:
            log.info("isolated sandbox: %s", note)
        devices = [d for d in found.devices if self._io_limit_works(d, read_bps, write_bps)]
        self.builder.io_devices = tuple(devices)
        self.builder.io_bps = per_tier
        log.info("isolated sandbox: disk bandwidth per instance (read, write B/s by tier, 0 unlimited): %s on %s",
                 per_tier, ", ".join(devices) or "no disk")

    def _io_limit_works(self, device: str, read_bps: int, write_bps: int) -> bool:
        """Whether the kernel takes limits for `device` (it refuses e.g. a device without a
        request queue): tried once on a throw-away cgroup, so that no create() fails on it."""
        try:
            cg = self.cgroups.create(IO_PROBE_CGROUP, Limits(64 * MB, 0.1, 1, io_read_bps=read_bps,
                                                             io_write_bps=write_bps, io_devices=(device,)))
        except OSError as exc:
            log.warning("isolated sandbox: disk %s cannot be limited, its bandwidth is not: %s", device, exc)
            return False
        cg.remove()
        return True

    def remove_stale(self) -> int:
        """Kill and remove every instance cgroup of this scope (left by a dead platform)."""
        names = self.cgroups.instance_names()
        for name in names:
            if name in self.table.live:
                continue
            cg = self.cgroups.attach(name)
            cg.kill_all()
            cg.remove(timeout_s=5.0)
        return len(names)

    async def close(self) -> None:
        self._closing = True
        self.supervisor.stop_restarting()
        await self.generics.close()
        await self.layer_ready.close()
        await self.handover.close()
        await asyncio.gather(*(p.destroy() for p in list(self.table.live.values())), return_exceptions=True)
        await self.supervisor.close()
        self.netns.close()
        self.cgroups.remove_scope()

    def keep_ready(self, shape: InstanceShape, count: int) -> None:
        # Before start() the pool remembers the shape and builds once the sandbox runs.
        if not self._closing:
            self.generics.keep(shape, count)

    def ready_instances(self, runtime: RuntimeKind) -> int:
        return self.generics.ready_count(runtime=runtime)

    def layer_ready_instances(self) -> int:
        return self.layer_ready.pool.ready_count()

    def _prebuilt_floor(self, runtime: RuntimeKind) -> int:
        return self.settings.sandbox_prebuilt if runtime.language == "python" else self.settings.sandbox_prebuilt_node

    def _prebuilt_ceiling(self, shape: InstanceShape) -> int:
        """At most this many of `shape` ready, however high the demand: none when its runtime
        keeps none (floor 0); never more than its tier's running invocations."""
        if self._prebuilt_floor(shape.runtime) <= 0:
            return 0
        most = self.settings.sandbox_prebuilt_max
        tier = self.settings.tiers.get(shape.memory_mb)
        return min(most, tier.concurrency) if tier is not None else most

    # --- instances ------------------------------------------------------------------------

    def runtime_paths(self, spec: SandboxSpec) -> RuntimePaths:
        return RuntimePaths(rootfs.CODE_DIR, tuple(rootfs.layer_dir(i) for i in range(len(spec.layer_dirs))),
                            rootfs.TMP_DIR)

    async def create(self, spec: SandboxSpec, first_frame: bytes = b"") -> IsolatedProcess:
        # A pre-built instance is handed over without a single suspension: nothing to cancel.
        proc = self._create_prebuilt(spec, first_frame)
        if proc is not None:
            return proc
        # Shielded: a caller that gives up must not strand a half-made instance; whatever
        # gets made after a cancellation is destroyed as soon as it exists.
        task = asyncio.ensure_future(self._create(spec, first_frame))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_destroy_abandoned)
            raise

    def _create_prebuilt(self, spec: SandboxSpec, first_frame: bytes) -> IsolatedProcess | None:
        """The fast path: a ready generic instance of the spec's shape that waits for its go
        byte, given its code and its first frame at once; None when there is none."""
        if not self.started or self._closing:
            return None
        started = time.perf_counter()
        _, code_dir, layer_dirs = self.paths.resolve(spec)
        self.table.check_new_id(spec.instance_id)
        shape = InstanceShape.of(spec)
        proc, path = self.layer_ready.take(spec, code_dir, first_frame), CreatePath.LAYER
        if proc is None:
            proc = self.handover.take_ready(self.generics, shape, code_dir, layer_dirs, first_frame)
            path = CreatePath.PREBUILT
        if proc is None:
            return None
        return self._created(proc, spec, shape, path, started, first_frame)

    async def _create(self, spec: SandboxSpec, first_frame: bytes) -> IsolatedProcess:
        started = time.perf_counter()
        if not self.started or self._closing:
            raise SandboxError("the sandbox is not started")
        argv, code_dir, layer_dirs = self.paths.resolve(spec)
        self.table.reserve(spec.instance_id)
        shape = InstanceShape.of(spec)
        try:
            proc, path = await self._make_retrying(spec, shape, argv, code_dir, layer_dirs, first_frame)
        except BaseException:
            self.table.unreserve(spec.instance_id)
            raise
        return self._created(proc, spec, shape, path, started, first_frame)

    async def _make_retrying(self, spec: SandboxSpec, shape: InstanceShape, argv: list[str], code_dir: str,
                             layer_dirs: list[str], first_frame: bytes) -> tuple[IsolatedProcess, CreatePath]:
        """`_make`, once more on the restarted helpers when it failed because the launcher or
        the zygote died under it (e.g. "no Python zygote"): the helpers' death is the
        platform's, never the function's failure. A second failure is reported."""
        helpers = self.supervisor.launcher
        try:
            return await self._make(spec, shape, argv, code_dir, layer_dirs, first_frame)
        except SandboxError as exc:
            if self._closing or (helpers is not None and helpers.alive and self.supervisor.launcher is helpers):
                raise  # the helpers are fine: the failure is this instance's own
            log.warning("creating an instance failed as the sandbox's helpers died (%s); retrying on new ones", exc)
        return await self._make(spec, shape, argv, code_dir, layer_dirs, first_frame)

    async def _make(self, spec: SandboxSpec, shape: InstanceShape, argv: list[str], code_dir: str,
                    layer_dirs: list[str], first_frame: bytes) -> tuple[IsolatedProcess, CreatePath]:
        """The one strategy choice: each path in `CreatePath`'s order, the first that works."""
        proc = self.generics.take(shape)
        if proc is not None:
            try:
                self.handover.give_code(proc, code_dir, layer_dirs, first_frame)
                return proc, CreatePath.PREBUILT
            except SandboxError as exc:  # e.g. it died just now: make one below
                log.warning("a generic %s instance could not be used: %s", spec.runtime.name, exc)
                await proc.destroy()
        name = cgroup_name(spec.instance_id)
        if await self.supervisor.zygote_for(spec.runtime):
            proc = await self.builder.build(BuildPlan(shape, name, argv, by_zygote=True))
            try:
                self.handover.give_code(proc, code_dir, layer_dirs, first_frame)
            except BaseException:
                await proc.destroy()
                raise
            return proc, CreatePath.ZYGOTE
        plan = BuildPlan(shape, name, argv, code_dir=code_dir, layer_dirs=tuple(layer_dirs))
        return await self.builder.build(plan), CreatePath.EXEC

    def _created(self, proc: IsolatedProcess, spec: SandboxSpec, shape: InstanceShape, path: CreatePath,
                 started: float, first_frame: bytes) -> IsolatedProcess:
        """What every successful create ends with: the instance is the spec's now (and has its
        first frame: one exec'd with its code got none before its go byte)."""
        if first_frame:
            proc.send_first(first_frame)
        proc.promote()
        proc.paths = self.runtime_paths(spec)
        self.table.claim(proc, spec.instance_id)
        proc.stats.update(create_ms=(time.perf_counter() - started) * 1000, path=path.value)
        self.generics.used(shape, self._prebuilt_floor(spec.runtime), self._prebuilt_ceiling(shape))
        self.layer_ready.used(spec)
        if proc.cgroup.name.startswith(GENERIC_PREFIX):
            asyncio.get_running_loop().call_later(RENAME_DELAY_S, self.table.rename_cgroup, proc)
        return proc

    async def _build_generic(self, shape: InstanceShape, layers_first: bool = False) -> IsolatedProcess:
        """A generic instance of `shape`, for the pool (its cgroup is renamed once taken);
        `layers_first`: a zygote child that waits for its layers before its hello (none
        without a zygote: LayerReady sees no go pipe and gives up)."""
        if self._closing or not self.started:
            raise SandboxError("the sandbox is closing")
        argv = self.paths.argv(shape.runtime, shape.memory_mb, generic=True)
        by_zygote = await self.supervisor.zygote_for(shape.runtime)
        plan = BuildPlan(shape, GENERIC_PREFIX + secrets.token_hex(6), argv, by_zygote=by_zygote, ahead_of_time=True,
                         layers_first=layers_first and by_zygote)
        return await self.builder.build(plan)

    def _forget(self, proc: IsolatedProcess) -> None:
        """`proc` was destroyed: nothing lists it any more, its uid is free."""
        self.table.remove(proc)
        self.generics.discard(proc)
        self.layer_ready.pool.discard(proc)
        self.uids.release(proc.uid)


def _destroy_abandoned(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is None:
        asyncio.ensure_future(task.result().destroy())
