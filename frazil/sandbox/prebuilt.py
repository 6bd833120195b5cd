"""Generic instances built ahead of time, per shape (runtime + tier limits), so that a cold
create() only specializes one: its code appears at /code and the runtime goes on with
hello/init (see `frazil.sandbox.attach`).

A generic instance has gone through everything but the code: its own cgroup with the tier's
limits, namespaces, /tmp, /proc, uid, Landlock, seccomp; a Python one is a zygote child
waiting in the runtime loop, a Node one a runtime exec'd and waiting for "init". It belongs
to no function and counts in no tier (the pool never sees it) until a create() takes it.

Ownership: the IsolatedSandbox owns every instance (all are in its table, and its close()
destroys them); this pool lists the generic ones that are ready and untaken, and decides when
to build more. One pool per sandbox; what it knows of one shape is one `_ShapeState`.

How many per shape (the target): what recent demand needs (`demand.DemandEstimate`: the
shape's cold starts in the last `window_s` seconds), at least the shape's floor and at most
its ceiling, both given by the sandbox. A burst of cold starts thus raises the target, the
refills after each hand-over build up to it, and as the burst ages out of the window the
target decays back to the floor (`_trim` re-reads it), its surplus ready instances destroyed.

Invariants (event loop thread only):
- an instance is in at most one shape's `ready` deque, and only until it is taken or has died;
- per shape, ready + building <= the shape's target; over all shapes, ready + building <= cap,
  and their estimated memory (`cost_mb` each) <= budget_mb (a generic Python instance holds
  ~3 MB of its own, a Node one ~6-8 MB: see isolated.GENERIC_COST_MB);
- each shape is refilled by at most one task at a time, which builds at most `parallel`
  instances at a time (cold starts in a burst drain a pool faster than one build refills it).

Refills run off the critical path: a cold start (`used()`) only schedules one, `delay_s`
later, so that it gets the CPUs first; the next cold start of the shape pushes it back, so
that during a burst (cold starts spaced less than `delay_s`) no build competes with the
hand-overs - or, once none is ready, with the runtimes exec'd instead - for the CPUs and the
launcher; the burst's demand is built in its pauses. (Measured: a burst of Node hand-overs
with refills between them took ~60 % longer at p50; a Node start is CPU-bound, so a build
during a burst on a busy machine saves a later cold start no CPU.)

Shapes come from `keep()` (pinned: what the instance pool asks for through
`Sandbox.keep_ready`; its count is the floor) or from demand (`used()`): a demanded shape
that goes unused for `idle_ttl_s` is dropped, and its ready instances destroyed. Nothing is
built before `start()` (the sandbox's start: a shape kept earlier is remembered until then).

Error policy of refills: a failed build is logged and the shape backs off (1 s, doubling up
to 60 s) before the next try; a refill never raises into create(), which then builds an
instance itself.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from frazil.sandbox.base import InstanceShape
from frazil.sandbox.demand import DemandEstimate

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0


@dataclass(eq=False)
class _ShapeState:
    """Everything the pool knows about one shape."""

    demand: DemandEstimate
    ready: deque = field(default_factory=deque)  # built, untaken, oldest first
    target: int = 0  # how many to keep ready; 0: none wanted (and no demand recorded)
    floor: int = 0  # kept ready whatever the demand (until unused for idle_ttl_s, unless pinned)
    ceiling: int = 0  # kept ready at most, however high the demand
    pinned: bool = False  # kept by keep(), whatever the demand; never trimmed below its floor
    last_used: float | None = None  # monotonic time of the last create() of this shape
    building: int = 0  # builds in flight, counted from the start of their wave
    backoff_s: float = 0.0  # after failed builds (0: none); reset by a good build
    death_backoff_s: float = 0.0  # after deaths before use (0: none); reset by a take
    refill: asyncio.Task | None = None  # the one refill task of this shape, if running
    timer: asyncio.TimerHandle | None = None  # a refill due (delay_s after a take), if armed


class GenericPool:
    def __init__(self, build: Callable[[InstanceShape], Awaitable], *, cap: int, delay_s: float,
                 idle_ttl_s: float, window_s: float = 60.0, budget_mb: float = float("inf"),
                 cost_mb: Callable[[InstanceShape], float] = lambda shape: 0.0, parallel: int = 2,
                 clock: Callable[[], float] = time.monotonic):
        self._build = build  # async (shape) -> a generic, sandboxed IsolatedProcess
        self.cap = cap
        self.window_s = window_s  # the demand of a shape: its cold starts in this many last seconds
        self.budget_mb = budget_mb  # estimated memory of all ready + building instances, at most
        self._cost_mb = cost_mb  # estimated memory of one generic instance of a shape
        self.clock = clock  # of demand and idleness (tests move it on instead of waiting)
        self.parallel = parallel  # builds of one shape at a time
        self.delay_s = delay_s
        self.idle_ttl_s = idle_ttl_s
        self._shapes: dict[InstanceShape, _ShapeState] = {}
        self._builds: set[asyncio.Future] = set()  # in flight, awaited at close
        self._trim_handle: asyncio.TimerHandle | None = None
        self._started = False
        self._closed = False
        self.stats = {"taken": 0, "missed": 0, "built": 0, "failed": 0, "died": 0}

    # --- what the sandbox asks ------------------------------------------------------------

    def start(self) -> None:
        """Begin building what is wanted (in the event loop: refills are its tasks)."""
        self._started = True
        for shape in self._shapes:
            self._schedule(shape)
        self._arm_trim()

    def keep(self, shape: InstanceShape, count: int) -> None:
        """Keep at least `count` ready for `shape` whatever the demand (0: stop keeping any)."""
        state = self._state(shape)
        state.pinned = count > 0
        state.floor = max(0, count)
        self._set_target(shape, self._wanted(state) if count > 0 else 0)

    def used(self, shape: InstanceShape, floor: int, ceiling: int) -> None:
        """A cold create() of `shape` happened: from now on keep what recent demand needs, at
        least `floor` (unless pinned: its floor stays) and at most `ceiling` (0: none at all),
        until the shape goes unused for idle_ttl_s."""
        state = self._state(shape)
        now = self.clock()
        state.last_used = now
        state.ceiling = max(0, ceiling)
        if not state.pinned:
            state.floor = floor if ceiling > 0 else 0
        state.demand.record(now, state.ceiling)
        if state.timer is not None:  # a burst goes on: its refill waits until it pauses
            state.timer.cancel()
            state.timer = None
        wanted = self._wanted(state, now)
        if wanted != state.target:
            self._set_target(shape, wanted)
        self._schedule(shape)

    def take(self, shape: InstanceShape, *, with_go: bool = False):
        """A ready generic instance of `shape`, or None; the oldest that has already said
        hello (a Node runtime may still be starting), else the oldest; never one that has
        exited. `with_go`: only one with a go pipe (a zygote child)."""
        state = self._shapes.get(shape)
        chosen = first = None
        for proc in state.ready if state is not None else ():
            if proc.exited or (with_go and proc.go_fd is None):
                continue
            if proc.greeted():
                chosen = proc
                break
            if first is None:
                first = proc
        chosen = chosen or first
        if chosen is not None:
            state.ready.remove(chosen)
            state.death_backoff_s = 0.0
        self.stats["taken" if chosen is not None else "missed"] += 1
        return chosen

    def discard(self, proc) -> None:
        """`proc` is being destroyed: forget it if it is still listed."""
        for shape, state in self._shapes.items():
            if proc in state.ready:
                state.ready.remove(proc)
                self._schedule(shape)
                return

    def ready(self, shape: InstanceShape) -> tuple:
        """The ready instances of `shape`, oldest first."""
        state = self._shapes.get(shape)
        return tuple(state.ready) if state is not None else ()

    def ready_count(self, shape: InstanceShape | None = None, runtime=None) -> int:
        """Ready instances of `shape`, or of every shape of `runtime`, or of all shapes."""
        if shape is not None:
            state = self._shapes.get(shape)
            return len(state.ready) if state is not None else 0
        return sum(len(s.ready) for sh, s in self._shapes.items() if runtime is None or sh.runtime == runtime)

    def building_count(self) -> int:
        return sum(s.building for s in self._shapes.values())

    def target(self, shape: InstanceShape) -> int:
        state = self._shapes.get(shape)
        return state.target if state is not None else 0

    async def settled(self, timeout_s: float = 30.0) -> None:
        """Wait until every shape has its target ready (tests and benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while any(len(s.ready) < min(s.target, self.cap) for s in self._shapes.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"generic instances not ready within {timeout_s:g} s")
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        """Stop building: cancel refills, wait for builds in flight (the sandbox destroys
        every instance it made, taken or not)."""
        self._closed = True
        if self._trim_handle is not None:
            self._trim_handle.cancel()
        refills = []
        for state in self._shapes.values():
            if state.timer is not None:
                state.timer.cancel()
                state.timer = None
            if state.refill is not None:
                state.refill.cancel()
                refills.append(state.refill)
        await asyncio.gather(*refills, return_exceptions=True)
        await asyncio.gather(*self._builds, return_exceptions=True)
        for state in self._shapes.values():
            state.ready.clear()

    # --- refilling ------------------------------------------------------------------------

    def _state(self, shape: InstanceShape) -> _ShapeState:
        state = self._shapes.get(shape)
        if state is None:
            state = self._shapes[shape] = _ShapeState(DemandEstimate(self.window_s))
        return state

    def _wanted(self, state: _ShapeState, now: float | None = None) -> int:
        return state.demand.wanted(self.clock() if now is None else now, state.floor, state.ceiling)

    def _set_target(self, shape: InstanceShape, count: int) -> None:
        state = self._state(shape)
        state.target = count
        for _ in range(max(0, len(state.ready) - count)):
            self._drop(state.ready.pop())
        if count == 0:
            state.last_used = None
        self._schedule(shape)
        self._arm_trim()

    def _missing(self, state: _ShapeState, shape: InstanceShape) -> int:
        everyone = self.ready_count() + self.building_count()
        missing = min(state.target - len(state.ready) - state.building, self.cap - everyone)
        cost = self._cost_mb(shape)
        if cost > 0 and self.budget_mb != float("inf"):
            committed = sum((len(s.ready) + s.building) * self._cost_mb(sh) for sh, s in self._shapes.items())
            missing = min(missing, int((self.budget_mb - committed) // cost))
        return missing

    def _schedule(self, shape: InstanceShape) -> None:
        state = self._state(shape)
        if (not self._started or self._closed or state.refill is not None or state.timer is not None
                or self._missing(state, shape) <= 0):
            return
        delay = max(self.delay_s, state.death_backoff_s)
        state.timer = asyncio.get_running_loop().call_later(delay, self._start_refill, shape)

    def _start_refill(self, shape: InstanceShape) -> None:
        state = self._shapes[shape]
        state.timer = None
        if not self._closed and state.refill is None:
            state.refill = asyncio.ensure_future(self._refill(shape))

    async def _refill(self, shape: InstanceShape) -> None:
        state = self._shapes[shape]
        try:
            while not self._closed and self._missing(state, shape) > 0:
                wave = min(self._missing(state, shape), self.parallel)
                # Counted as building now, before the tasks start: other shapes' refills see them.
                state.building += wave
                built = await asyncio.gather(*(self._build_one(shape) for _ in range(wave)))
                if not all(built):  # back off before the next wave
                    delay = (state.backoff_s or BACKOFF_FIRST_S / 2) * 2
                    state.backoff_s = min(BACKOFF_MAX_S, delay)
                    log.warning("building a generic %s instance (%d MB) failed, next try in %.0f s",
                                shape.runtime.name, shape.memory_mb, delay)
                    await asyncio.sleep(delay)
        finally:
            if state.refill is asyncio.current_task():
                state.refill = None
        if not self._closed and self._missing(state, shape) > 0:  # taken meanwhile, past the loop's check
            self._schedule(shape)

    async def _build_one(self, shape: InstanceShape) -> bool:
        """Build one instance into the pool (already counted in `building`); False when the
        build failed."""
        state = self._shapes[shape]
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
            state.building -= 1
        state.backoff_s = 0.0
        self.stats["built"] += 1
        if self._closed or self._missing(state, shape) < 0:
            self._drop(proc)
            return True
        state.ready.append(proc)
        proc.on_exit(lambda proc=proc, shape=shape: self._died(shape, proc))
        return True

    def _died(self, shape: InstanceShape, proc) -> None:
        state = self._shapes[shape]
        if proc in state.ready:  # exited before anyone took it
            state.ready.remove(proc)
            self.stats["died"] += 1
            delay = min(BACKOFF_MAX_S, (state.death_backoff_s or BACKOFF_FIRST_S / 2) * 2)
            state.death_backoff_s = delay
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
        demanded = any((s.target > 0 and not s.pinned) or s.target > s.floor for s in self._shapes.values())
        if not self._started or self._closed or not demanded or self._trim_handle is not None:
            return
        period = min(max(1.0, self.idle_ttl_s / 4), max(0.05, self.window_s / 2))
        self._trim_handle = asyncio.get_running_loop().call_later(period, self._trim)

    def _trim(self) -> None:
        """Drop shapes unused for idle_ttl_s, and lower the others' targets to what the
        demand still needs (their surplus ready instances are destroyed)."""
        self._trim_handle = None
        now = self.clock()
        for shape, state in list(self._shapes.items()):
            last_used = now if state.last_used is None else state.last_used
            if state.target > 0 and not state.pinned and now - last_used >= self.idle_ttl_s:
                self._set_target(shape, 0)
            elif self._wanted(state, now) < state.target:
                self._set_target(shape, self._wanted(state, now))
        self._arm_trim()
