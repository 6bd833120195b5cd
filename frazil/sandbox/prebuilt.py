"""Generic instances built ahead of time, per shape (runtime + tier limits), so that a cold
create() only specializes one: its code appears at /code and the runtime goes on with
hello/init (see `frazil.sandbox.specialize`).

A generic instance has gone through everything but the code: its own cgroup with the tier's
limits, namespaces, /tmp, /proc, uid, Landlock, seccomp; a Python one is a zygote child
waiting in the runtime loop, a Node one a runtime exec'd and waiting for "init". It belongs
to no function and counts in no tier (the pool never sees it) until a create() takes it.

Ownership: the IsolatedSandbox owns every instance (all are in its table, and its close()
destroys them); this pool lists the generic ones that are ready and untaken, and decides when
to build more. One pool per sandbox.

Invariants (event loop thread only):
- an instance is in at most one `_ready` deque, and only until it is taken or has died;
- per shape, ready + building <= the shape's target; over all shapes, ready + building <= cap
  (memory: a generic Python instance costs ~1-2 MB, a Node one ~30-40 MB);
- each shape is refilled by at most one task at a time, which builds at most `parallel`
  instances at a time (cold starts in a burst drain a pool faster than one build refills it).

Refills run off the critical path: a take() only schedules one, `delay_s` later, so that the
cold start that took the instance gets the CPUs first. Shapes come from `keep()` (pinned: the
sandbox's start and the pool's hint) or from demand (`used()`): a demanded shape that goes
unused for `idle_ttl_s` is dropped, and its ready instances destroyed.

Error policy of refills: a failed build is logged and the shape backs off (1 s, doubling up
to 60 s) before the next try; a refill never raises into create(), which then builds an
instance itself.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Awaitable, Callable

from frazil.sandbox.base import InstanceShape

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0


class GenericPool:
    def __init__(self, build: Callable[[InstanceShape], Awaitable], *, cap: int, delay_s: float,
                 idle_ttl_s: float, parallel: int = 2):
        self._build = build  # async (shape) -> a generic, sandboxed IsolatedProcess
        self.cap = cap
        self.parallel = parallel  # builds of one shape at a time
        self.delay_s = delay_s
        self.idle_ttl_s = idle_ttl_s
        self._ready: dict[InstanceShape, deque] = {}
        self._targets: dict[InstanceShape, int] = {}
        self._pinned: set[InstanceShape] = set()
        self._last_used: dict[InstanceShape, float] = {}
        self._building: dict[InstanceShape, int] = {}
        self._backoff: dict[InstanceShape, float] = {}  # after failed builds; reset by a good one
        self._death_backoff: dict[InstanceShape, float] = {}  # after deaths before use; reset by a take
        self._tasks: dict[InstanceShape, asyncio.Task] = {}
        self._timers: dict[InstanceShape, asyncio.TimerHandle] = {}  # refills due (delay_s after a take)
        self._builds: set[asyncio.Future] = set()  # in flight, awaited at close
        self._trim_handle: asyncio.TimerHandle | None = None
        self._closed = False
        self.stats = {"taken": 0, "missed": 0, "built": 0, "failed": 0, "died": 0}

    # --- what the sandbox asks ------------------------------------------------------------

    def keep(self, shape: InstanceShape, count: int) -> None:
        """Keep `count` ready for `shape` whatever the demand (0: stop keeping any)."""
        if count > 0:
            self._pinned.add(shape)
            self._set_target(shape, count)
        else:
            self._pinned.discard(shape)
            self._set_target(shape, 0)

    def used(self, shape: InstanceShape, count: int) -> None:
        """A create() of `shape` happened: keep `count` ready for it from now on (unless
        pinned), until it goes unused for idle_ttl_s."""
        self._last_used[shape] = time.monotonic()
        if shape not in self._pinned and count > 0 and self._targets.get(shape, 0) != count:
            self._set_target(shape, count)
        self._schedule(shape)

    def take(self, shape: InstanceShape, *, with_go: bool = False):
        """A ready generic instance of `shape`, or None; the oldest that has already said
        hello (a Node runtime may still be starting), else the oldest; never one that has
        exited. `with_go`: only one with a go pipe (a zygote child)."""
        ready = self._ready.get(shape)
        chosen = first = None
        for proc in ready or ():
            if proc.exited or (with_go and proc.go_fd is None):
                continue
            if proc.greeted():
                chosen = proc
                break
            if first is None:
                first = proc
        chosen = chosen or first
        if chosen is not None:
            ready.remove(chosen)
            self._death_backoff.pop(shape, None)
        self.stats["taken" if chosen is not None else "missed"] += 1
        return chosen

    def discard(self, proc) -> None:
        """`proc` is being destroyed: forget it if it is still listed."""
        for shape, ready in self._ready.items():
            if proc in ready:
                ready.remove(proc)
                self._schedule(shape)
                return

    def ready_count(self, shape: InstanceShape | None = None) -> int:
        if shape is not None:
            return len(self._ready.get(shape, ()))
        return sum(len(r) for r in self._ready.values())

    def building_count(self) -> int:
        return sum(self._building.values())

    def target(self, shape: InstanceShape) -> int:
        return self._targets.get(shape, 0)

    async def settled(self, timeout_s: float = 30.0) -> None:
        """Wait until every shape has its target ready (tests and benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while any(self.ready_count(s) < self._capped(s) for s in self._targets):
            if time.monotonic() > deadline:
                raise TimeoutError(f"generic instances not ready within {timeout_s:g} s")
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        """Stop building: cancel refills, wait for builds in flight (the sandbox destroys
        every instance it made, taken or not)."""
        self._closed = True
        if self._trim_handle is not None:
            self._trim_handle.cancel()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await asyncio.gather(*self._builds, return_exceptions=True)
        self._ready.clear()

    # --- refilling ------------------------------------------------------------------------

    def _set_target(self, shape: InstanceShape, count: int) -> None:
        self._targets[shape] = count
        self._ready.setdefault(shape, deque())
        extra = len(self._ready[shape]) - count
        for _ in range(max(0, extra)):
            self._drop(self._ready[shape].pop())
        if count == 0:
            self._targets.pop(shape, None)
            self._last_used.pop(shape, None)
        self._schedule(shape)
        self._arm_trim()

    def _capped(self, shape: InstanceShape) -> int:
        return min(self._targets.get(shape, 0), self.cap)

    def _missing(self, shape: InstanceShape) -> int:
        mine = len(self._ready.get(shape, ())) + self._building.get(shape, 0)
        everyone = self.ready_count() + self.building_count()
        return min(self._targets.get(shape, 0) - mine, self.cap - everyone)

    def _schedule(self, shape: InstanceShape) -> None:
        if self._closed or shape in self._tasks or shape in self._timers or self._missing(shape) <= 0:
            return
        delay = max(self.delay_s, self._death_backoff.get(shape, 0.0))
        self._timers[shape] = asyncio.get_running_loop().call_later(delay, self._start_refill, shape)

    def _start_refill(self, shape: InstanceShape) -> None:
        del self._timers[shape]
        if not self._closed and shape not in self._tasks:
            self._tasks[shape] = asyncio.ensure_future(self._refill(shape))

    async def _refill(self, shape: InstanceShape) -> None:
        try:
            while not self._closed and self._missing(shape) > 0:
                wave = min(self._missing(shape), self.parallel)
                # Counted as building now, before the tasks start: other shapes' refills see them.
                self._building[shape] = self._building.get(shape, 0) + wave
                built = await asyncio.gather(*(self._build_one(shape) for _ in range(wave)))
                if not all(built):  # back off before the next wave
                    delay = self._backoff.get(shape, BACKOFF_FIRST_S / 2) * 2
                    self._backoff[shape] = min(BACKOFF_MAX_S, delay)
                    log.warning("building a generic %s instance (%d MB) failed, next try in %.0f s",
                                shape.runtime.name, shape.memory_mb, delay)
                    await asyncio.sleep(delay)
        finally:
            if self._tasks.get(shape) is asyncio.current_task():
                del self._tasks[shape]
        if not self._closed and self._missing(shape) > 0:  # taken meanwhile, past the loop's check
            self._schedule(shape)

    async def _build_one(self, shape: InstanceShape) -> bool:
        """Build one instance into the pool (already counted in `_building`); False when the
        build failed."""
        build = asyncio.ensure_future(self._build(shape))
        self._builds.add(build)
        build.add_done_callback(self._builds.discard)
        try:
            proc = await asyncio.shield(build)
        except asyncio.CancelledError:
            raise  # closing: the build goes on and the sandbox destroys what it made
        except Exception as exc:
            self.stats["failed"] += 1
            log.warning("building a generic %s instance (%d MB) failed: %s", shape.runtime.name, shape.memory_mb, exc)
            return False
        finally:
            self._building[shape] -= 1
        self._backoff.pop(shape, None)
        self.stats["built"] += 1
        if self._closed or self._missing(shape) < 0:
            self._drop(proc)
            return True
        self._ready.setdefault(shape, deque()).append(proc)
        proc.on_exit(lambda proc=proc, shape=shape: self._died(shape, proc))
        return True

    def _died(self, shape: InstanceShape, proc) -> None:
        ready = self._ready.get(shape)
        if ready is not None and proc in ready:  # exited before anyone took it
            ready.remove(proc)
            self.stats["died"] += 1
            delay = min(BACKOFF_MAX_S, self._death_backoff.get(shape, BACKOFF_FIRST_S / 2) * 2)
            self._death_backoff[shape] = delay
            log.warning("a generic %s instance exited before use (%s); next one in %.0f s",
                        shape.runtime.name, proc.exit_info().describe(), delay)
            self._drop(proc)
            self._schedule(shape)

    def _drop(self, proc) -> None:
        task = asyncio.ensure_future(proc.destroy())
        self._builds.add(task)
        task.add_done_callback(self._builds.discard)

    # --- demand that went away ------------------------------------------------------------

    def _arm_trim(self) -> None:
        unpinned = [s for s in self._targets if s not in self._pinned]
        if self._closed or not unpinned or self._trim_handle is not None:
            return
        self._trim_handle = asyncio.get_running_loop().call_later(
            max(1.0, self.idle_ttl_s / 4), self._trim)

    def _trim(self) -> None:
        self._trim_handle = None
        now = time.monotonic()
        for shape in [s for s in self._targets if s not in self._pinned]:
            if now - self._last_used.get(shape, now) >= self.idle_ttl_s:
                self._set_target(shape, 0)
        self._arm_trim()
