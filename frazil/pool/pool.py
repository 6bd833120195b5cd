"""Instances of every function version: warm reuse, keep-alive reaping, an LRU cap on idle
instances, and resident instances.

Ownership: `InstancePool` owns one `FunctionPool` per (function, version); a FunctionPool
owns its idle instances; an acquired instance belongs to its invocation until `release()`.
Invariant: an instance is in exactly one of FunctionPool.idle, a lease, or being destroyed.

Error policy of the reaper loop: an error destroying one instance is logged and the loop
goes on; it never stops while the platform runs.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Callable

from frazil.pool.instance import InitFailed, Instance, SdkHandler
from frazil.sandbox.base import Sandbox, SandboxSpec
from frazil.runtimes import get_runtime
from frazil.settings import Settings
from frazil.store.ids import new_id
from frazil.store.models import FunctionVersion

log = logging.getLogger(__name__)

VersionKey = tuple[str, int]


class FunctionPool:
    """Instances of one function version."""

    def __init__(self, version: FunctionVersion):
        self.version = version
        self.idle: list[Instance] = []  # a stack: the most recently used is the warmest
        self.busy: set[Instance] = set()
        self.retired = False  # a newer version is active, or the function was deleted

    @property
    def size(self) -> int:
        return len(self.idle) + len(self.busy)


class InstancePool:
    def __init__(self, settings: Settings, sandbox: Sandbox, *, code_dir: Callable[[FunctionVersion], object],
                 layer_dirs: Callable[[FunctionVersion], tuple], sdk_handler: SdkHandler | None = None,
                 on_event: Callable[[str, Instance], None] | None = None):
        self.settings = settings
        self.sandbox = sandbox
        # Instance.start listens for "hello" before it attaches to the channel, so the sandbox
        # may hand over runtimes that said hello already (zygote forks, pre-built instances).
        sandbox.early_hello_ok = True
        self._code_dir = code_dir
        self._layer_dirs = layer_dirs
        self._sdk_handler = sdk_handler
        self._on_event = on_event or (lambda kind, inst: None)
        self._pools: dict[VersionKey, FunctionPool] = {}
        self._idle_lru: OrderedDict[str, Instance] = OrderedDict()  # least recently used first
        self._reaper: asyncio.Task | None = None
        self._destroying: set[asyncio.Task] = set()

    # --- acquire / release ----------------------------------------------------------------

    async def acquire(self, version: FunctionVersion) -> tuple[Instance, bool]:
        """A warm idle instance of `version`, or a new one (cold). Raises InitFailed."""
        pool = self._pool(version)
        while pool.idle:
            instance = pool.idle.pop()
            self._idle_lru.pop(instance.id, None)
            if instance.alive:
                pool.busy.add(instance)
                return instance, False
            self._destroy_later(instance)
        instance = await self._create(version, resident=False)
        pool.busy.add(instance)
        return instance, True

    def release(self, instance: Instance) -> None:
        pool = self._pools.get(instance.version.key)
        if pool is not None:
            pool.busy.discard(instance)
        if pool is None or pool.retired or not instance.alive:
            self._destroy_later(instance)
            if pool is not None and instance.resident and not pool.retired:
                self._replace_resident(pool)
            return
        pool.idle.append(instance)
        if not instance.resident:
            self._idle_lru[instance.id] = instance
            self._enforce_idle_cap()
        self._on_event("idle", instance)

    def _pool(self, version: FunctionVersion) -> FunctionPool:
        pool = self._pools.get(version.key)
        if pool is None:
            pool = self._pools[version.key] = FunctionPool(version)
        return pool

    async def _create(self, version: FunctionVersion, *, resident: bool) -> Instance:
        started = time.perf_counter()
        spec = SandboxSpec(
            instance_id=new_id()[-16:],
            runtime=get_runtime(version.runtime),
            code_dir=self._code_dir(version),
            layer_dirs=tuple(self._layer_dirs(version)),
            memory_mb=version.memory_mb,
            cpu=self.settings.tiers[version.memory_mb].cpu,
            tmp_mb=self.settings.tmp_mb,
            pids_max=self.settings.pids_max,
        )
        proc = await self.sandbox.create(spec)
        instance = Instance(version, proc, log_cap=self.settings.log_cap_bytes,
                            max_result_bytes=self.settings.max_payload_bytes, sdk_handler=self._sdk_handler,
                            resident=resident)
        try:
            await instance.start(init_timeout_s=max(10.0, version.timeout_s))
        except BaseException:
            await instance.destroy()
            raise
        instance.stats["create_ms"] = (time.perf_counter() - started) * 1000
        self._on_event("created", instance)
        return instance

    # --- resident instances ---------------------------------------------------------------

    async def ensure_resident(self, version: FunctionVersion) -> None:
        """Bring `version`'s resident instances up to `version.resident`."""
        pool = self._pool(version)
        have = sum(1 for i in (*pool.idle, *pool.busy) if i.resident)
        for _ in range(max(0, version.resident - have)):
            try:
                instance = await self._create(version, resident=True)
            except (InitFailed, Exception) as exc:
                log.warning("resident instance of %s v%s failed to start: %s", version.function, version.number, exc)
                return
            if pool.retired:
                self._destroy_later(instance)
                return
            pool.idle.append(instance)

    def _replace_resident(self, pool: FunctionPool) -> None:
        task = asyncio.ensure_future(self.ensure_resident(pool.version))
        self._destroying.add(task)
        task.add_done_callback(self._destroying.discard)

    # --- retiring and reaping -------------------------------------------------------------

    def retire(self, function: str, keep_version: int | None = None) -> None:
        """Stop serving every version of `function` but `keep_version`: idle instances go now,
        busy ones when they are released."""
        for key, pool in list(self._pools.items()):
            if key[0] == function and key[1] != keep_version:
                pool.retired = True
                for instance in pool.idle:
                    self._idle_lru.pop(instance.id, None)
                    self._destroy_later(instance)
                pool.idle.clear()
                if not pool.busy:
                    del self._pools[key]

    def _enforce_idle_cap(self) -> None:
        while len(self._idle_lru) > self.settings.max_idle_instances:
            _, victim = self._idle_lru.popitem(last=False)
            self._evict(victim)

    def _evict(self, instance: Instance) -> None:
        pool = self._pools.get(instance.version.key)
        if pool is not None and instance in pool.idle:
            pool.idle.remove(instance)
        self._destroy_later(instance)
        self._on_event("reaped", instance)

    def reap(self, now: float | None = None) -> int:
        """Destroy idle non-resident instances unused for the keep-alive period."""
        now = time.monotonic() if now is None else now
        expired = [i for i in self._idle_lru.values() if now - i.last_used >= self.settings.keep_alive_s]
        for instance in expired:
            self._idle_lru.pop(instance.id, None)
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
            self._on_event("destroyed", instance)
        except Exception:
            log.exception("destroying instance %s failed", instance.id)

    # --- platform life cycle --------------------------------------------------------------

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever(), name="instance-reaper")

    def instances(self) -> list[Instance]:
        return [i for pool in self._pools.values() for i in (*pool.idle, *pool.busy)]

    def counts(self) -> dict[str, int]:
        idle = sum(len(p.idle) for p in self._pools.values())
        busy = sum(len(p.busy) for p in self._pools.values())
        return {"idle": idle, "busy": busy}

    async def close(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        for pool in self._pools.values():
            for instance in (*pool.idle, *pool.busy):
                self._destroy_later(instance)
        self._pools.clear()
        self._idle_lru.clear()
        while self._destroying:
            await asyncio.gather(*list(self._destroying), return_exceptions=True)
