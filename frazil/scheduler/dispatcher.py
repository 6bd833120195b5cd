"""The async queue's dispatcher: takes queued invocations from the store and runs them.

Rules (SPEC "Scheduling"): an invocation waits while its tier is full and is recorded
`throttled` once its retry window (`expires_at`) has passed without a slot; a function
error or timeout is retried `async_max_retries` times with exponential backoff. Records
are durable before they reach us, so a crash loses nothing: on start the platform puts
back the ones that were running (at-least-once).

Fairness: each pass takes due invocations round-robin across functions, so one function's
backlog cannot starve another's.

Latency: records just queued on this node are `offer`ed as they commit. While the loop runs
and the last pass left nothing due behind (no backlog, no record waiting for a slot), each one
that is due at once and finds a free slot starts then, without waiting for a pass to read it
back from the store; the rest wait for the pass the offer wakes. Starting is a claim, so an
offered record that a pass or another node took first is simply not run twice.

Claims are leases. Invariant: a RUNNING async row belongs to the node in `owner`, for the
attempt numbered `attempts` (the claim's epoch), until `lease_until` (claim time + the
function's timeout + LEASE_MARGIN_S). Only that node, for that attempt, may write its outcome
(`InvocationStore.settle` compares owner and attempt, so a stale worker cannot settle a newer
claim). A row comes back to QUEUED in exactly three ways: its owner settles it for a retry; a
dispatcher's pass finds its lease lapsed (its own or another node's: a claim or an outcome
write that failed, a node that died) and takes it back; or a node's start puts back its own
orphans (`requeue_orphans`). `attempts` is counted by the claim, so it counts every start,
including one a crash or a lost lease interrupted.

This is the embedded queue. In a cluster the JetStream queue (frazil.cluster.consumer) runs
invocations with the same claims and the same fence (frazil.scheduler.attempt), but there the
broker's redelivery, not a lapsed lease, hands a dead holder's invocation to another node.

Error policy: a failing pass (e.g. the database is briefly locked or unreachable) is logged
and retried after a short pause; the loop only ends when the platform stops. An outcome write
that fails is retried with a bounded backoff while the lease lasts; after that the lease
brings the row back (at-least-once). A failed claim is logged and left to its lease. `drain()` is the burst mode
(as arq's worker has): passes until nothing is queued or running, then it returns counters.
Passes never interleave (`_pass_lock`), so draining is safe while the loop runs too.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from frazil.scheduler.admission import Admission
from frazil.scheduler.attempt import Attempts, DispatchStats, backoff, gone_error, lease_s, throttled_error
from frazil.scheduler.invoker import Invoker
from frazil.store.catalog import FunctionCatalog
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus

log = logging.getLogger(__name__)

__all__ = ["Dispatcher", "DispatchStats", "round_robin"]

BATCH = 200
# The longest a dispatcher sleeps between passes: another node's claim made since the last
# pass is revisited at least this often.
REVISIT_S = 30.0


def round_robin(records: list[InvocationRecord]) -> list[InvocationRecord]:
    """Oldest first within a function, functions taking turns."""
    queues: OrderedDict[str, list[InvocationRecord]] = OrderedDict()
    for record in records:
        queues.setdefault(record.function, []).append(record)
    ordered = []
    while queues:
        for name in list(queues):
            ordered.append(queues[name].pop(0))
            if not queues[name]:
                del queues[name]
    return ordered


class Dispatcher:
    def __init__(self, settings, store: InvocationStore, catalog: FunctionCatalog, admission: Admission,
                 invoker: Invoker, owner: str):
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.admission = admission
        self.invoker = invoker
        self.owner = owner
        self._wake = asyncio.Event()  # the loop's: a pass may start something now
        self._progress = asyncio.Event()  # drain()'s: the same news, cleared by drain alone
        self._pass_lock = asyncio.Lock()  # one pass at a time: the loop's and drain()'s
        self._running: dict[str, asyncio.Task] = {}  # record id -> its task; one task per record
        self._task: asyncio.Task | None = None
        self.attempts = Attempts(settings, store, invoker, owner)
        self.stats = self.attempts.stats
        # Set when a pass left a due invocation queued for lack of a slot: only then is a
        # freed slot worth a pass (waking on every sync invocation cost two queries each).
        self._waiting_for_slot = False
        self._backlog = False  # the last pass left due records for the next one (a full batch)
        self._offers: set[asyncio.Task] = set()
        for slots in admission.tiers.values():
            slots.on_free = self._slot_freed

    async def enqueue(self, record: InvocationRecord) -> None:
        """The AsyncQueue's door (frazil.scheduler.entry): the record is committed, durable,
        before this returns; then it is offered."""
        await self.store.insert(record)
        self.offer([record])

    def committed(self, records: list[InvocationRecord]) -> None:
        """AsyncQueue: queued records a transaction of their own committed (a table change's)."""
        self.offer(records)

    def notify(self) -> None:
        """Something was queued: worth a pass now."""
        self._kick()

    def offer(self, records: list[InvocationRecord]) -> None:
        """These queued records were just committed: start the ones due now on free slots
        at once (see the module docstring), and wake the loop for the rest."""
        self._kick()
        if self._task is None or self._task.done() or self._waiting_for_slot or self._backlog:
            return  # burst mode, another role, or older work first: the pass decides
        now = time.time()
        due = [r for r in records if r.status is InvocationStatus.QUEUED and (r.next_attempt_at or now) <= now]
        if due:
            task = asyncio.create_task(self._start_offered(due))
            self._offers.add(task)
            task.add_done_callback(self._offers.discard)

    async def _start_offered(self, records: list[InvocationRecord]) -> None:
        for record in records:
            version = await self.catalog.active(record.function)
            if version is None:
                continue  # deleted meanwhile: a pass records it
            if record.id in self._running:  # a pass started it (checked after the await: one task per record)
                continue
            slots = self.admission.slots(version.memory_mb)
            if not slots.try_take():
                return  # the tier is full: the pass takes the rest in order
            self._running[record.id] = asyncio.create_task(self._execute(record, version, slots))

    def _kick(self) -> None:
        self._wake.set()
        self._progress.set()

    def _slot_freed(self) -> None:
        if self._waiting_for_slot:
            self._kick()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name="async-dispatcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        for task in list(self._offers):
            task.cancel()
        await asyncio.gather(*self._offers, return_exceptions=True)
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*(t for t in [self._task, *self._running.values()] if t), return_exceptions=True)

    @property
    def running(self) -> int:
        return len(self._running)

    async def _run_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                pause = await self.dispatch_once()
            except Exception:
                log.exception("dispatching async invocations failed; retrying")
                pause = 0.5
            try:
                await asyncio.wait_for(self._wake.wait(), pause)
            except asyncio.TimeoutError:
                pass

    async def dispatch_once(self) -> float | None:
        """Start every due invocation a tier has room for; return how long to wait before
        the next pass is needed without a wake-up (at most REVISIT_S)."""
        async with self._pass_lock:
            return await self._pass()

    async def _pass(self) -> float | None:
        now = time.time()
        taken_back = await self.store.take_back_expired(now)
        if taken_back:
            log.warning("took back %d async invocations whose claims had lapsed", taken_back)
        due = [r for r in await self.store.due(now, BATCH) if r.id not in self._running]
        wait_until: float | None = None
        self._waiting_for_slot = False
        for record in round_robin(due):
            version = await self.catalog.active(record.function)
            if version is None:
                await self.attempts.finish(record, InvocationStatus.FAILED, error=gone_error(record.function))
                continue
            if record.id in self._running:  # an offer started it while we awaited
                continue
            slots = self.admission.slots(version.memory_mb)
            if not slots.try_take():
                self._waiting_for_slot = True
                if record.expires_at is not None and now >= record.expires_at:
                    await self.attempts.finish(record, InvocationStatus.THROTTLED,
                                               error=throttled_error(self.settings, version))
                elif record.expires_at is not None:
                    wait_until = min(wait_until or record.expires_at, record.expires_at)
                continue
            self._running[record.id] = asyncio.create_task(self._execute(record, version, slots))
            # Its claim may land after next_due_time() below reads the leases: wake for it anyway.
            lapse = now + self.lease_s(version)
            wait_until = min(wait_until or lapse, lapse)
        self._backlog = len(due) >= BATCH
        if self._backlog:
            return 0.0
        next_due = await self.store.next_due_time()
        if next_due is not None and next_due > now:
            wait_until = min(wait_until or next_due, next_due)
        return REVISIT_S if wait_until is None else min(REVISIT_S, max(0.0, wait_until - time.time()))

    async def _execute(self, record: InvocationRecord, version, slots) -> None:
        try:
            started = time.time()
            lease_until = started + self.lease_s(version)
            try:
                if not await self.store.claim(record, self.owner, started, lease_until):
                    return  # someone else took it
            except Exception:
                log.exception("claiming async invocation %s failed; its lease will bring it back if it was taken",
                              record.id)
                return
            await self.attempts.run(record, version, started, lease_until)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("async invocation %s failed in the platform", record.id)
        finally:
            slots.give()
            self._running.pop(record.id, None)
            self._kick()

    def lease_s(self, version) -> float:
        """How long a claim of an invocation of `version` lasts."""
        return lease_s(version)

    def backoff(self, attempts: int) -> float:
        return backoff(self.settings, attempts)

    async def drain(self, timeout_s: float = 30.0) -> DispatchStats:
        """Burst mode: run passes until nothing is queued or running, and return what this
        drain saw done (by this dispatcher's passes or its background loop's).

        Between passes it waits for news - an invocation finished, a slot freed, something
        queued - or for the time the pass said the next record falls due or expires, never
        polling. Delayed invocations and retry backoffs are waited for like any queued one;
        raises TimeoutError when the queue is not empty after `timeout_s`."""
        before = self.stats.copy()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._progress.clear()  # before the pass: news arriving during it is kept
            pause = await self.dispatch_once()
            if not self._running and await self.store.count_unsettled() == 0:
                return self.stats.since(before)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"the async queue did not drain within {timeout_s:g} s")
            try:
                await asyncio.wait_for(self._progress.wait(), remaining if pause is None else min(pause, remaining))
            except asyncio.TimeoutError:
                pass
