"""Runs invocations: a sync one now (within the tier's retry window), any one on an instance.

The tier slot is taken by the caller (sync path here, the dispatcher for async), so that
the admission rule lives in one place per mode and `run()` only runs.
"""
from __future__ import annotations

import logging
import time
import orjson

from frazil.errors import NotFound, TooManyRequests
from frazil.pool.instance import InitFailed, InvokeOutcome, error_dict
from frazil.pool.pool import InstancePool
from frazil.sandbox.base import SandboxError
from frazil.scheduler.admission import Admission
from frazil.store.catalog import FunctionCatalog
from frazil.store.ids import new_id
from frazil.store.models import FunctionVersion, InvocationRecord, InvocationStatus
from frazil.store.record_writer import RecordWriter

log = logging.getLogger(__name__)


def envelope_json(record: InvocationRecord, outcome: InvokeOutcome) -> bytes:
    """The result envelope of SPEC.md, encoded. The result goes in as the JSON text the
    record already holds (`Invoker.run` encoded it once), not encoded a second time."""
    head = orjson.dumps({
        "success": outcome.ok,
        "message": "success" if outcome.ok else (outcome.error or {}).get("message", "the invocation failed"),
    })
    tail = {"invocation_id": record.id, "cold": bool(record.cold), "duration_ms": outcome.duration_ms}
    if not outcome.ok:
        tail["error"] = outcome.error
    result = record.result.encode() if outcome.ok and record.result is not None else b"null"
    return head[:-1] + b',"result":' + result + b"," + orjson.dumps(tail)[1:]


class Invoker:
    def __init__(self, settings, catalog: FunctionCatalog, pool: InstancePool, admission: Admission,
                 records: RecordWriter, metrics=None):
        self.settings = settings
        self.catalog = catalog
        self.pool = pool
        self.admission = admission
        self.records = records
        self.metrics = metrics
        self.inflight: dict[str, InvocationRecord] = {}  # running now, not yet in the store

    async def active_version(self, name: str) -> FunctionVersion:
        version = await self.catalog.active(name)
        if version is None:
            raise NotFound(f"function {name!r} does not exist")
        return version

    async def invoke_sync(self, version: FunctionVersion, event_json: bytes) -> tuple[InvocationRecord, InvokeOutcome]:
        """Run now, waiting up to the sync retry window for a tier slot; else TooManyRequests."""
        slots = self.admission.slots(version.memory_mb)
        if not await slots.take(self.settings.sync_retry_s):
            if self.metrics:
                self.metrics.throttled(version)
            raise TooManyRequests(
                f"the {version.memory_mb} MB tier is at its limit of {slots.limit} running invocations; "
                f"no slot freed within {self.settings.sync_retry_s:g} s, try again later")
        record = InvocationRecord(id=new_id(), function=version.function, version=version.number, mode="sync",
                                  status=InvocationStatus.QUEUED, created_at=time.time())
        try:
            outcome = await self.run(record, version, event_json)
        finally:
            slots.give()
        self.records.submit(record)
        return record, outcome

    async def run(self, record: InvocationRecord, version: FunctionVersion, event_json: bytes) -> InvokeOutcome:
        """Run one attempt of `record` on an instance of `version` (the caller holds a slot)
        and fill the record in with the outcome."""
        record.status = InvocationStatus.RUNNING
        record.version = version.number
        record.attempts += 1
        record.started_at = time.time()
        self.inflight[record.id] = record
        if self.metrics:
            self.metrics.started(version)
        try:
            outcome = await self._attempt(record, version, event_json)
        finally:
            del self.inflight[record.id]
        record.status = outcome.status
        record.finished_at = time.time()
        record.duration_ms = outcome.duration_ms
        record.result = orjson.dumps(outcome.result).decode() if outcome.ok else None
        record.error = None if outcome.ok else orjson.dumps(outcome.error).decode()
        record.logs = outcome.logs
        if self.metrics:
            self.metrics.finished(version, record, outcome)
        return outcome

    async def _attempt(self, record: InvocationRecord, version: FunctionVersion, event_json: bytes) -> InvokeOutcome:
        try:
            instance, cold = await self.pool.acquire(version)
        except InitFailed as exc:
            record.cold = True
            status = InvocationStatus.TIMEOUT if exc.error.get("type") == "Timeout" else InvocationStatus.FAILED
            return InvokeOutcome(status, error=exc.error, logs=exc.logs)
        except SandboxError as exc:
            log.error("could not create an instance of %s: %s", version.function, exc)
            record.cold = True
            return InvokeOutcome(InvocationStatus.FAILED,
                                 error=error_dict("RuntimeExited", f"the instance could not be started: {exc}"))
        record.cold = cold
        record.instance_id = instance.id
        try:
            return await instance.invoke(record.id, event_json, cold=cold, timeout_s=version.timeout_s)
        finally:
            self.pool.release(instance)

    def lookup(self, invocation_id: str) -> InvocationRecord | None:
        """A record not yet in the store: running, or finished and waiting for its batch."""
        return self.inflight.get(invocation_id) or self.records.pending(invocation_id)
