"""The one door every invocation goes through, whatever fired it.

The API route, a function's HTTP endpoint, a delayed call, a replay of a dead letter, a call
from another function (frazil.sdk.functions) and schedules describe what they want as a `Call`
and hand it to `Entry.invoke`; a table change (frazil.scheduler.table_events), whose record must
commit in the change's own transaction, has `Entry.queued` make the record, stores it there
and tells the queue once it committed (`Entry.notify`). So a record's `trigger`, the calling
end user and the async queue's rules are decided in one place, not once per source.

A sync call runs now (`Invoker.invoke_sync`, which waits for a tier slot); an async one is
recorded as queued and handed to the async queue before `invoke` returns - durable (and, in a
cluster, published) before the caller hears "accepted"; the queue runs it later, no earlier
than its `next_attempt_at` (frazil.cluster.interfaces.AsyncQueue).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

import orjson

from frazil.pool.instance import InvokeOutcome
from frazil.store.ids import new_id
from frazil.store.lifecycle import INITIAL
from frazil.store.models import FunctionVersion, InvocationRecord, Trigger


# The longest delay of a delayed invocation: 30 days (SPEC "Who may invoke").
MAX_DELAY_S = 2_592_000
# The deepest an invocation may be in a chain of calls between functions (`Call.depth`, SPEC
# "Who may invoke"): deeper calls and table events are refused, so a function that calls or
# fires itself cannot take every instance and slot there is.
MAX_CHAIN_DEPTH = 8


class Mode(str, Enum):
    SYNC = "sync"
    ASYNC = "async"


@dataclass(frozen=True)
class Call:
    """Where an invocation comes from and how it wants to run (the event travels beside it)."""

    trigger: Trigger = Trigger.API
    mode: Mode = Mode.SYNC
    delay_s: float | None = None  # async only: run no earlier than this many seconds from now
    user: dict | None = None  # {"id", "username"} of the end user who called: context.user
    retry_of: str | None = None  # the record whose event is replayed (trigger `retry`)
    depth: int = 0  # calls between functions above this invocation (frazil.sdk.functions)
    # Sync only, for a caller with a deadline of its own: the callee's timeout and its wait for
    # a tier slot are cut to what the caller has left.
    timeout_s: float | None = None
    slot_wait_s: float | None = None

    def caller_json(self) -> str | None:
        return orjson.dumps(self.user).decode() if self.user is not None else None


@dataclass(frozen=True)
class Started:
    """What `Entry.invoke` did: a finished sync invocation has its `outcome`; an async
    one is only queued (`outcome` None)."""

    record: InvocationRecord
    outcome: InvokeOutcome | None = None


class Entry:
    def __init__(self, settings, invoker, queue):
        self.settings = settings
        self.invoker = invoker
        self.queue = queue  # AsyncQueue: the Dispatcher (embedded), or the JetStream queue (cluster)
        self.store = queue.store  # InvocationStore: where a table change inserts its records

    async def invoke(self, version: FunctionVersion, event_json: bytes, call: Call) -> Started:
        """Run (sync) or durably queue (async) one invocation of `version`. `event_json` is
        validated JSON. Raises TooManyRequests when a sync call finds its tier full."""
        if call.mode is Mode.ASYNC:
            record = self.queued(version, event_json, call)
            await self.queue.enqueue(record)  # durable before the caller hears "accepted"
            return Started(record)
        record = self._record(version, call, time.time())
        # Kept for replays (POST /v1/invocations/{id}/retry), within the limit a result has;
        # only an HTTP endpoint's event (a body inflated by base64) can be larger.
        if len(event_json) <= self.settings.max_payload_bytes:
            record.event = event_json.decode()
        record, outcome = await self.invoker.invoke_sync(version, event_json, record, timeout_s=call.timeout_s,
                                                         slot_wait_s=call.slot_wait_s)
        return Started(record, outcome)

    def queued(self, version: FunctionVersion, event_json: bytes, call: Call) -> InvocationRecord:
        """The queued record of an async invocation (not stored yet: storing it accepts it;
        `notify` the queue after it committed)."""
        now = time.time()
        record = self._record(version, call, now)
        record.event = event_json.decode()  # the queue itself: always kept
        record.next_attempt_at = now + call.delay_s if call.delay_s else None
        # The throttle window starts when the invocation falls due, not when it was accepted:
        # a delayed one must not expire while it is still waiting for its time.
        record.expires_at = (record.next_attempt_at or now) + self.settings.async_retry_s
        return record

    def notify(self, records: list[InvocationRecord]) -> None:
        """Queued `records` (made by `queued`) were committed by a transaction of their own
        (a table change's): the queue takes them from there (AsyncQueue.committed)."""
        self.queue.committed(records)

    @staticmethod
    def _record(version: FunctionVersion, call: Call, now: float) -> InvocationRecord:
        return InvocationRecord(id=new_id(), function=version.function, version=version.number,
                                mode=call.mode.value, status=INITIAL, created_at=now,
                                trigger=call.trigger, caller=call.caller_json(), retry_of=call.retry_of,
                                depth=call.depth)
