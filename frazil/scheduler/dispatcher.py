"""The async queue's dispatcher: takes queued invocations from the store and runs them.

Rules (SPEC "Scheduling"): an invocation waits while its tier is full and is recorded
`throttled` once its retry window (`expires_at`) has passed without a slot; a function
error or timeout is retried `async_max_retries` times with exponential backoff. Records
are durable before they reach us, so a crash loses nothing: on start the platform puts
back the ones that were running (at-least-once).

Fairness: each pass takes due invocations round-robin across functions, so one function's
backlog cannot starve another's.

Error policy: a failing pass (e.g. the database is briefly locked) is logged and retried
after a short pause; the loop only ends when the platform stops. `drain()` runs passes until
nothing is queued or running (tests).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict

from frazil.scheduler.admission import Admission
from frazil.scheduler.invoker import Invoker
from frazil.store.catalog import FunctionCatalog
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus

log = logging.getLogger(__name__)

BATCH = 200


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
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task] = {}
        self._task: asyncio.Task | None = None
        # Set when a pass left a due invocation queued for lack of a slot: only then is a
        # freed slot worth a pass (waking on every sync invocation cost two queries each).
        self._waiting_for_slot = False
        for slots in admission.tiers.values():
            slots.on_free = self._slot_freed

    def notify(self) -> None:
        self._wake.set()

    def _slot_freed(self) -> None:
        if self._waiting_for_slot:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name="async-dispatcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
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
        the next pass is needed without a wake-up (None: until woken)."""
        now = time.time()
        due = [r for r in await self.store.due(now, BATCH) if r.id not in self._running]
        wait_until: float | None = None
        self._waiting_for_slot = False
        for record in round_robin(due):
            version = await self.catalog.active(record.function)
            if version is None:
                await self._finish(record, InvocationStatus.FAILED, error={
                    "type": "FunctionNotFound", "message": f"function {record.function!r} no longer exists",
                    "stack": ""})
                continue
            slots = self.admission.slots(version.memory_mb)
            if not slots.try_take():
                self._waiting_for_slot = True
                if record.expires_at is not None and now >= record.expires_at:
                    await self._finish(record, InvocationStatus.THROTTLED, error={
                        "type": "TooManyRequests",
                        "message": f"the {version.memory_mb} MB tier stayed full for the whole retry window "
                                   f"of {self.settings.async_retry_s:g} s", "stack": ""})
                elif record.expires_at is not None:
                    wait_until = min(wait_until or record.expires_at, record.expires_at)
                continue
            self._running[record.id] = asyncio.create_task(self._execute(record, version, slots))
        if len(due) >= BATCH:
            return 0.0
        next_due = await self.store.next_due_time()
        if next_due is not None and next_due > now:
            wait_until = min(wait_until or next_due, next_due)
        return None if wait_until is None else max(0.0, wait_until - time.time())

    async def _execute(self, record: InvocationRecord, version, slots) -> None:
        try:
            claimed = dataclasses.replace(record, status=InvocationStatus.RUNNING, owner=self.owner,
                                          started_at=time.time())
            if not await self.store.update(claimed, expect=InvocationStatus.QUEUED):
                return  # someone else took it
            event = (record.event or "null").encode()
            outcome = await self.invoker.run(claimed, version, event)
            if not outcome.ok and claimed.attempts <= self.settings.async_max_retries:
                claimed.status = InvocationStatus.QUEUED
                claimed.owner = None
                claimed.next_attempt_at = time.time() + self.backoff(claimed.attempts)
            await self.store.update(claimed)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("async invocation %s failed in the platform", record.id)
        finally:
            slots.give()
            self._running.pop(record.id, None)
            self._wake.set()

    def backoff(self, attempts: int) -> float:
        return min(60.0, self.settings.async_retry_backoff_s * (2 ** (attempts - 1)))

    async def _finish(self, record: InvocationRecord, status: InvocationStatus, *, error: dict) -> None:
        import orjson

        record.status = status
        record.finished_at = time.time()
        record.error = orjson.dumps(error).decode()
        await self.store.update(record, expect=InvocationStatus.QUEUED)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Run passes until nothing is queued or running (for tests)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await self.dispatch_once()
            if self._running:
                await asyncio.wait(list(self._running.values()), timeout=0.1)
            elif await self.store.count_queued() == 0:
                return
            else:
                await asyncio.sleep(0.01)
        raise TimeoutError("the async queue did not drain in time")
