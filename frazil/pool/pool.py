"""Instances of every function version: warm reuse, keep-alive reaping, an LRU cap on idle
instances, and resident instances.

Ownership: `InstancePool` owns one `FunctionPool` per (function, version); a FunctionPool
owns its member instances; an acquired instance is leased to its invocation until
`release()`. A cold one may be leased with its init still in flight (`lease()`: its first
invocation goes right behind init); released before init was answered, it is destroyed. Whether a member is parked or leased is its `Instance.state` (IDLE or BUSY),
kept nowhere else; the idle stack and the LRU are orderings of the parked members, updated
together in `_park`/`_unpark` (invariants below, `check()` verifies them).

Error policy of the reaper loop: an error destroying one instance is logged and the loop
goes on; it never stops while the platform runs.
"""
from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import OrderedDict
from typing import Awaitable, Callable

from frazil.pool.instance import EgressHook, InitFailed, InitFrame, Instance, InstanceState, SdkHandler
from frazil.sandbox.base import InstanceShape, Sandbox, SandboxSpec
from frazil.runtimes import PYTHON, get_runtime
from frazil.settings import Settings
from frazil.store.ids import new_id
from frazil.store.models import FunctionVersion

log = logging.getLogger(__name__)

VersionKey = tuple[str, int]

# A parked instance is frozen (Sandbox `freeze`: nothing a handler left running may spend CPU
# while it is idle) once it has stayed parked this long, not at once: one taken again sooner -
# a function under steady load - skips the freeze and the thaw, two cgroup writes and two
# wake-ups of each of its processes per invocation (bench/warm_throughput.py). A thread a
# handler left running so gets at most this much time past its invocation.
FREEZE_AFTER_S = 0.05


class PoolEvent(enum.Enum):
    """What the pool tells its `on_event` listener, with the instance concerned."""

    CREATED = "created"  # started and ready; `instance.stats["create_ms"]` is set
    IDLE = "idle"  # an invocation gave it back and it is parked, warm, for the next one
    REAPED = "reaped"  # parked too long (keep-alive) or pushed out by the idle cap; being destroyed
    DESTROYED = "destroyed"  # gone; `instance.stats["destroy_ms"]` is set


class FunctionPool:
    """Instances of one function version.

    Invariants (between awaits):
    - `members` holds every instance of this version the pool has started and not yet sent to
      destruction;
    - `idle` holds the parked members, in the order they were parked: each is IDLE, or DEAD if
      its runtime died while parked (acquire discards those as it meets them);
    - a member not in `idle` is leased: BUSY, or DEAD if it died during its lease (release
      discards it). So IDLE members are exactly the parked live ones, BUSY exactly the leased.
    - the parked resident members plus those starting never exceed `resident_target`; a busy
      resident beyond it (the target was lowered) leaves when it is released.
    """

    def __init__(self, version: FunctionVersion):
        self.version = version
        self.members: set[Instance] = set()
        self.idle: list[Instance] = []  # a stack: the most recently used is the warmest
        self.retired = False  # a newer version is active, or the function was deleted
        # How many resident instances this node keeps: the version's `resident` (embedded), or
        # this node's share of them (cluster: frazil.cluster.residents). Starts being made count.
        self.resident_target = 0
        self.resident_starting = 0

    def residents(self) -> int:
        """The live resident members."""
        return sum(1 for i in self.members if i.resident and i.alive)

    @property
    def busy(self) -> list[Instance]:
        """The members leased to invocations now (read from their state)."""
        return [i for i in self.members if i.state is InstanceState.BUSY]

    @property
    def size(self) -> int:
        return len(self.members)


class InstancePool:
    def __init__(self, settings: Settings, sandbox: Sandbox, *, code_dir: Callable[[FunctionVersion], Awaitable[object]],
                 layer_dirs: Callable[[FunctionVersion], Awaitable[tuple]], sdk_handler: SdkHandler | None = None,
                 egress: EgressHook | None = None,
                 on_event: Callable[[PoolEvent, Instance], None] | None = None):
        self.settings = settings
        self.sandbox = sandbox
        self._code_dir = code_dir
        self._layer_dirs = layer_dirs
        self._sdk_handler = sdk_handler
        self._egress = egress
        self._on_event = on_event or (lambda kind, inst: None)
        self._pools: dict[VersionKey, FunctionPool] = {}
        # The parked non-resident members of every pool, least recently parked first: the
        # order of keep-alive reaping and of the idle cap. Residents are never reaped.
        self._idle_lru: OrderedDict[str, Instance] = OrderedDict()
        self._reaper: asyncio.Task | None = None
        self._destroying: set[asyncio.Task] = set()
        # The parked instances not frozen yet, by id: the timer that freezes each.
        self._freezing: dict[str, asyncio.TimerHandle] = {}

    # --- acquire / release ----------------------------------------------------------------

    async def acquire(self, version: FunctionVersion) -> tuple[Instance, bool]:
        """A warm idle instance of `version`, or a new one (cold), ready. Raises InitFailed."""
        instance, cold = await self.lease(version)
        if cold:
            try:
                await instance.initialized()
            except BaseException:
                self.release(instance)  # dead now: discarded
                raise
        return instance, cold

    async def lease(self, version: FunctionVersion) -> tuple[Instance, bool]:
        """A warm idle instance of `version`, or a new one (cold) whose init may still be in
        flight: its first `invoke()` goes right behind init, and raises InitFailed if init
        fails. Raises InitFailed when the instance could not even be given its init."""
        pool = self._pool(version)
        while pool.idle:
            instance = pool.idle[-1]
            self._unpark(pool, instance)
            if instance.alive:
                instance.proc.thaw()  # parked instances get frozen (_park); kills one it cannot thaw
                instance.lease()
                return instance, False
            self._discard(pool, instance)
        instance = await self._create(version, resident=False, ready=False)
        instance.lease()
        pool.members.add(instance)
        return instance, True

    def release(self, instance: Instance) -> None:
        """Take back a leased instance: park it warm, or destroy it when it died or its
        version is retired (a resident is then replaced)."""
        pool = self._pools.get(instance.version.key)
        if pool is None or instance not in pool.members:
            self._destroy_later(instance)  # its pool was retired meanwhile, and dropped or replaced
            return
        if (pool.retired or not instance.alive or instance.init_pending  # never used: its init's fate unknown
                or (instance.resident and pool.residents() > pool.resident_target)):
            self._discard(pool, instance)
            if instance.resident and not pool.retired and not instance.alive:
                self._replace_resident(pool)
            if pool.retired and not pool.members:
                del self._pools[instance.version.key]  # its last lease ended
            return
        instance.end_lease()
        self._park(pool, instance)
        self._enforce_idle_cap()
        self._on_event(PoolEvent.IDLE, instance)

    # The only places a member enters or leaves the idle orderings (FunctionPool invariants).

    def _park(self, pool: FunctionPool, instance: Instance) -> None:
        pool.idle.append(instance)
        # Nothing it left running (a thread) may run while it is idle: frozen unless taken soon.
        self._freezing[instance.id] = asyncio.get_running_loop().call_later(
            FREEZE_AFTER_S, self._freeze_parked, instance)
        if not instance.resident:
            self._idle_lru[instance.id] = instance

    def _unpark(self, pool: FunctionPool, instance: Instance) -> None:
        if pool.idle[-1] is instance:  # acquire takes the warmest, from the top
            pool.idle.pop()
        else:
            pool.idle.remove(instance)
        self._idle_lru.pop(instance.id, None)
        timer = self._freezing.pop(instance.id, None)
        if timer is not None:
            timer.cancel()

    def _freeze_parked(self, instance: Instance) -> None:
        """FREEZE_AFTER_S after `instance` was parked, and it still is (else the timer was cancelled)."""
        del self._freezing[instance.id]
        if instance.state is InstanceState.IDLE:
            instance.proc.freeze()

    def _discard(self, pool: FunctionPool, instance: Instance) -> None:
        """Out of the pool (already unparked, or leased) and on its way to destruction."""
        pool.members.discard(instance)
        self._destroy_later(instance)

    def _pool(self, version: FunctionVersion) -> FunctionPool:
        pool = self._pools.get(version.key)
        if pool is None or pool.retired:
            # A retired key in use again is a new version under an old number (a function
            # deleted and deployed again counts from 1): it gets a pool of its own, and the
            # retired one's leased members are destroyed on release as strangers.
            pool = self._pools[version.key] = FunctionPool(version)
        return pool

    async def _create(self, version: FunctionVersion, *, resident: bool, ready: bool = True) -> Instance:
        """A new instance of `version`, given its init; `ready`: and its answer awaited
        (else the first invoke awaits it). PoolEvent.CREATED once the runtime said ready."""
        started = time.perf_counter()
        spec = SandboxSpec(
            instance_id=new_id()[-16:],
            runtime=get_runtime(version.runtime),
            code_dir=await self._code_dir(version),
            layer_dirs=tuple(await self._layer_dirs(version)),
            memory_mb=version.memory_mb,
            cpu=self.settings.tiers[version.memory_mb].cpu,
            tmp_mb=self.settings.tmp_mb,
            pids_max=self.settings.pids_max,
            env=tuple(sorted(version.env.items())),
        )
        init = InitFrame.make(version, self.sandbox.runtime_paths(spec), max_result_bytes=self.settings.max_payload_bytes,
                              platform_env=self._egress.environment(self.sandbox) if self._egress is not None else {})
        proc = await self.sandbox.create(spec, init.frame)
        instance = Instance(version, proc, init, log_cap=self.settings.log_cap_bytes,
                            sdk_handler=self._sdk_handler, egress=self._egress, resident=resident,
                            on_ready=lambda instance: self._created(instance, started))
        try:
            await instance.begin(init_timeout_s=max(10.0, version.timeout_s))
            if ready:
                await instance.initialized()
        except BaseException:
            await instance.destroy()
            raise
        return instance

    def _created(self, instance: Instance, started: float) -> None:
        instance.stats["create_ms"] = (time.perf_counter() - started) * 1000
        self._on_event(PoolEvent.CREATED, instance)

    # --- resident instances ---------------------------------------------------------------

    async def ensure_resident(self, version: FunctionVersion, count: int | None = None) -> None:
        """Keep `count` resident instances of `version` here (default: `version.resident`, all
        of them): start the missing ones, stop idle ones beyond it now and busy ones when they
        are released. Calls may overlap: the ones starting are counted, so none overshoots."""
        target = version.resident if count is None else count
        existing = self._pools.get(version.key)
        if target == 0 and (existing is None or existing.retired):
            return  # none wanted, none here to stop (retire() stopped a retired pool's idle ones)
        if existing is not None and existing.retired and existing.version == version:
            return  # a pass that read the versions before this one was retired: it has none now
        pool = self._pool(version)
        pool.resident_target = target
        for instance in [i for i in pool.idle if i.resident][:max(0, pool.residents() - target)]:
            self._unpark(pool, instance)
            self._discard(pool, instance)
        await self._fill_residents(pool)

    async def _fill_residents(self, pool: FunctionPool) -> None:
        """Start residents until `pool` holds its target (read afresh at each step)."""
        version = pool.version
        while not pool.retired and pool.residents() + pool.resident_starting < pool.resident_target:
            pool.resident_starting += 1
            try:
                instance = await self._create(version, resident=True)
            except (InitFailed, Exception) as exc:
                log.warning("resident instance of %s v%s failed to start: %s", version.function, version.number, exc)
                return
            finally:
                pool.resident_starting -= 1
            if pool.retired or pool.residents() >= pool.resident_target:  # retired, or fewer wanted meanwhile
                self._destroy_later(instance)
                return
            pool.members.add(instance)
            self._park(pool, instance)

    def _replace_resident(self, pool: FunctionPool) -> None:
        task = asyncio.ensure_future(self._fill_residents(pool))
        self._destroying.add(task)
        task.add_done_callback(self._destroying.discard)

    # --- retiring and reaping -------------------------------------------------------------

    def retire(self, function: str, keep_version: int | None = None) -> None:
        """Stop serving every version of `function` but `keep_version`: idle instances go now,
        busy ones when they are released."""
        for key, pool in list(self._pools.items()):
            if key[0] == function and key[1] != keep_version:
                pool.retired = True
                for instance in reversed(pool.idle.copy()):
                    self._unpark(pool, instance)
                    self._discard(pool, instance)
                if not pool.members:
                    del self._pools[key]

    def stop_tier(self, memory_mb: int, why: str) -> int:
        """Stop every invocation running on an instance of the tier now (abort: the instance
        dies, its holder releases it); how many."""
        stopped = 0
        for pool in list(self._pools.values()):
            if pool.version.memory_mb == memory_mb:
                for instance in pool.busy:
                    instance.abort(why)
                    stopped += 1
        return stopped

    def _enforce_idle_cap(self) -> None:
        while len(self._idle_lru) > self.settings.max_idle_instances:
            victim = next(iter(self._idle_lru.values()))
            self._evict(victim)

    def _evict(self, instance: Instance) -> None:
        """A parked instance leaves for good (its pool is live: retire() empties retired ones)."""
        pool = self._pools[instance.version.key]
        self._unpark(pool, instance)
        self._discard(pool, instance)
        self._on_event(PoolEvent.REAPED, instance)

    def reap(self, now: float | None = None) -> int:
        """Destroy idle non-resident instances unused for the keep-alive period."""
        now = time.monotonic() if now is None else now
        expired = [i for i in self._idle_lru.values() if now - i.last_used >= self.settings.keep_alive_s]
        for instance in expired:
            self._evict(instance)
        return len(expired)

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(30.0, self.settings.keep_alive_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                self.reap()
            except Exception:
                log.exception("reaping idle instances failed")

    def _destroy_later(self, instance: Instance) -> None:
        task = asyncio.ensure_future(self._destroy(instance))
        self._destroying.add(task)
        task.add_done_callback(self._destroying.discard)

    async def _destroy(self, instance: Instance) -> None:
        try:
            started = time.perf_counter()
            await instance.destroy()
            instance.stats["destroy_ms"] = (time.perf_counter() - started) * 1000
            self._on_event(PoolEvent.DESTROYED, instance)
        except Exception:
            log.exception("destroying instance %s failed", instance.id)

    # --- platform life cycle --------------------------------------------------------------

    def start(self) -> None:
        self._keep_tiers_ready()
        self._reaper = asyncio.create_task(self._reap_forever(), name="instance-reaper")

    def _keep_tiers_ready(self) -> None:
        """Ask the sandbox to keep generic Python instances of every tier built ahead of time
        (`sandbox_prebuilt` each), so that a cold start only gives one its code."""
        if self.settings.sandbox_prebuilt <= 0:
            return
        for tier in self.settings.tiers.values():
            shape = InstanceShape(PYTHON, tier.memory_mb, tier.cpu, self.settings.tmp_mb, self.settings.pids_max)
            self.sandbox.keep_ready(shape, self.settings.sandbox_prebuilt)

    def instances(self) -> list[Instance]:
        return [i for pool in self._pools.values() for i in pool.members]

    def counts(self) -> dict[str, int]:
        """Live members by state (one that died while parked is in neither)."""
        counts = {"idle": 0, "busy": 0}
        for instance in self.instances():
            if instance.state is InstanceState.IDLE:
                counts["idle"] += 1
            elif instance.state is InstanceState.BUSY:
                counts["busy"] += 1
        return counts

    def warm_versions(self, limit: int) -> list[tuple[str, int]]:
        """The versions with an idle live instance, most recently used first, at most `limit`
        (what an invoker tells gateways in its heartbeat: frazil.cluster.placement)."""
        latest: dict[VersionKey, float] = {}
        for pool in self._pools.values():
            if pool.retired:
                continue
            for instance in pool.idle:
                if instance.state is InstanceState.IDLE:
                    latest[pool.version.key] = max(latest.get(pool.version.key, 0.0), instance.last_used)
        return sorted(latest, key=lambda key: -latest[key])[:limit]

    def check(self) -> None:
        """Raise AssertionError if an invariant of this module is broken (for tests)."""
        in_lru = []
        for key, pool in self._pools.items():
            assert pool.version.key == key, key
            assert set(pool.idle) <= pool.members and len(set(pool.idle)) == len(pool.idle), key
            for instance in pool.members:
                parked = instance in pool.idle
                if instance.state is InstanceState.BUSY:
                    assert not parked, f"leased instance {instance.id} is parked"
                elif instance.state is InstanceState.IDLE:
                    assert parked, f"idle instance {instance.id} is not parked"
                else:
                    assert instance.state is InstanceState.DEAD, f"{instance.id} is {instance.state}"
            in_lru += [i.id for i in pool.idle if not i.resident]
            parked_residents = sum(1 for i in pool.idle if i.resident and i.state is InstanceState.IDLE)
            assert parked_residents + pool.resident_starting <= max(pool.resident_target, 0) or pool.retired, key
        assert sorted(in_lru) == sorted(self._idle_lru), "the LRU is not the parked non-residents"
        parked = {i.id for pool in self._pools.values() for i in pool.idle}
        assert set(self._freezing) <= parked, "a freeze is pending for an instance not parked"

    async def close(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        for timer in self._freezing.values():
            timer.cancel()
        self._freezing.clear()
        for pool in self._pools.values():
            for instance in pool.members:
                self._destroy_later(instance)
        self._pools.clear()
        self._idle_lru.clear()
        while self._destroying:
            await asyncio.gather(*list(self._destroying), return_exceptions=True)
