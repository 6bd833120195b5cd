"""What a gateway does with invocations: sync ones run on invokers, async ones go to the queue.

A gateway holds no sandboxes (invokers do). `GatewayInvoker` is its Invoker: it resolves the
active version from the shared catalog as every node does, and runs each sync invocation on an
invoker over NATS (frazil.cluster.router); the invoker records it. Async invocations need nothing
of their own here: the gateway's Entry records them and publishes them to the JetStream queue
(frazil.cluster.queue), which the invokers consume (frazil.cluster.consumer).
"""
from __future__ import annotations

import time
from collections import OrderedDict

import orjson

from frazil.cluster.router import NatsRouter
from frazil.errors import TooManyRequests
from frazil.pool.instance import InvokeOutcome
from frazil.scheduler.invoker import Invoker, api_record
from frazil.store.models import FunctionVersion, InvocationRecord

# How long, and up to how many bytes of results, events and logs, a gateway keeps the records it
# relayed: the invoker's record writer stores them within milliseconds (seconds in an outage).
RELAYED_KEEP_S = 30.0
RELAYED_MAX_BYTES = 64 << 20


class RecentlyRelayed:
    """The records of the sync invocations this gateway relayed last, so that a record can be
    read here from the moment its answer left (as the embedded mode's record writer shows
    pending records), before the invoker's record writer has stored it. Bounded: a record is
    kept RELAYED_KEEP_S at most, and the oldest go first beyond RELAYED_MAX_BYTES."""

    def __init__(self):
        self._records: OrderedDict[str, tuple[float, int, InvocationRecord]] = OrderedDict()
        self._bytes = 0

    def add(self, record: InvocationRecord) -> None:
        size = sum(len(text or "") for text in (record.result, record.event, record.logs, record.error))
        now = time.monotonic()
        self._records[record.id] = (now, size, record)
        self._bytes += size
        while self._records:
            since, oldest_size, _ = next(iter(self._records.values()))
            if now - since <= RELAYED_KEEP_S and self._bytes <= RELAYED_MAX_BYTES:
                break
            self._records.popitem(last=False)
            self._bytes -= oldest_size

    def get(self, invocation_id: str) -> InvocationRecord | None:
        hit = self._records.get(invocation_id)
        return hit[2] if hit is not None and time.monotonic() - hit[0] <= RELAYED_KEEP_S else None


class GatewayInvoker(Invoker):
    """Sync invocations run on an invoker, which records them; this node relays the outcome."""

    router: NatsRouter  # set by frazil.wiring

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.relayed = RecentlyRelayed()

    async def invoke_sync(self, version: FunctionVersion, event_json: bytes, record: InvocationRecord | None = None,
                          *, timeout_s: float | None = None, slot_wait_s: float | None = None) \
            -> tuple[InvocationRecord, InvokeOutcome]:
        record = record or api_record(version)
        try:
            await self.router.invoke(version, event_json, record, timeout_s=timeout_s, slot_wait_s=slot_wait_s)
        except TooManyRequests:
            if self.metrics:
                self.metrics.throttled(version)
            raise
        outcome = InvokeOutcome(record.status, result=orjson.loads(record.result) if record.result else None,
                                error=orjson.loads(record.error) if record.error else None,
                                logs=record.logs or "", duration_ms=record.duration_ms or 0.0)
        self.relayed.add(record)
        return record, outcome

    def lookup(self, invocation_id: str) -> InvocationRecord | None:
        return self.relayed.get(invocation_id) or super().lookup(invocation_id)

