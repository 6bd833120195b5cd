"""Runs invocations: a sync one now (within the tier's retry window), any one on an instance.

The tier slot is taken by the caller (sync path here, the dispatcher for async), so that
the admission rule lives in one place per mode and `run()` only runs.
"""
from __future__ import annotations

import logging
import time
from typing import Callable
import orjson

from frazil.errors import NotFound, TooManyRequests
from frazil.pool.instance import InitFailed, InvokeOutcome, error_dict
from frazil.pool.pool import InstancePool
from frazil.sandbox.base import SandboxError
from frazil.scheduler.admission import Admission
from frazil.store.catalog import FunctionCatalog
from frazil.store.ids import new_id
from frazil.store.lifecycle import INITIAL, transition
from frazil.store.models import FunctionVersion, InvocationRecord, InvocationStatus
from frazil.store.record_writer import RecordWriter

log = logging.getLogger(__name__)


def lapsed_why(memory_mb: int) -> str:
    """Why an invocation was stopped or not started on a lapsed tier lease (cluster mode)."""
    return (f"this node lost its lease on {memory_mb} MB tier slots (PostgreSQL unreachable or too slow), "
            "so it may not run them")


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


def api_record(version: FunctionVersion) -> InvocationRecord:
    """The record of a plain sync API call (callers through frazil.scheduler.entry make their own)."""
    return InvocationRecord(id=new_id(), function=version.function, version=version.number, mode="sync",
                            status=INITIAL, created_at=time.time())


def _init_failed(exc: InitFailed) -> InvokeOutcome:
    """The outcome of an invocation whose instance's init failed."""
    status = InvocationStatus.TIMEOUT if exc.error.get("type") == "Timeout" else InvocationStatus.FAILED
    return InvokeOutcome(status, error=exc.error, logs=exc.logs)


class Invoker:
    def __init__(self, settings, catalog: FunctionCatalog, pool: InstancePool, admission: Admission,
                 records: RecordWriter, metrics=None, node: str | None = None):
        self.settings = settings
        self.catalog = catalog
        self.pool = pool
        self.admission = admission
        self.records = records
        self.metrics = metrics
        self.node = node  # written on every record this invoker runs
        self.inflight: dict[str, InvocationRecord] = {}  # running now, not yet in the store

    async def active_version(self, name: str) -> FunctionVersion:
        version = await self.catalog.active(name)
        if version is None:
            raise NotFound(f"function {name!r} does not exist")
        return version

    async def invoke_sync(self, version: FunctionVersion, event_json: bytes, record: InvocationRecord | None = None,
                          *, timeout_s: float | None = None, slot_wait_s: float | None = None) \
            -> tuple[InvocationRecord, InvokeOutcome]:
        """Run now, waiting up to the sync retry window (or `slot_wait_s`, when shorter) for a
        tier slot; else TooManyRequests. Sources reach this through frazil.scheduler.entry,
        which makes the new `record` (its trigger, caller, kept event); without one, a plain
        API record is made here. `timeout_s` cuts the version's timeout shorter."""
        slots = self.admission.slots(version.memory_mb)
        wait_s = self.settings.sync_retry_s if slot_wait_s is None else min(slot_wait_s, self.settings.sync_retry_s)
        if not await slots.take(wait_s):
            if self.metrics:
                self.metrics.throttled(version)
            raise TooManyRequests(
                f"the {version.memory_mb} MB tier is at its limit of {slots.limit} running invocations; "
                f"no slot freed within {wait_s:g} s, try again later")
        if record is None:
            record = api_record(version)
        try:
            outcome = await self.run(record, version, event_json, timeout_s=timeout_s)
        finally:
            slots.give()
        self.records.submit(record)
        return record, outcome

    async def run(self, record: InvocationRecord, version: FunctionVersion, event_json: bytes, *,
                  timeout_s: float | None = None,
                  retry: Callable[[InvokeOutcome], bool] | None = None) -> InvokeOutcome:
        """Run one attempt of `record` on an instance of `version` (the caller holds a slot)
        and fill the record in with the outcome: its status becomes the outcome's, or queued
        again when `retry` says the outcome is to be tried again (frazil.store.lifecycle)."""
        transition(record, InvocationStatus.RUNNING)
        record.version = version.number
        record.node = self.node
        record.attempts += 1
        record.started_at = time.time()
        self.inflight[record.id] = record
        try:
            outcome = await self._attempt(record, version, event_json,
                                          version.timeout_s if timeout_s is None else min(timeout_s, version.timeout_s))
        finally:
            del self.inflight[record.id]
        transition(record, InvocationStatus.QUEUED if retry is not None and retry(outcome) else outcome.status)
        record.finished_at = time.time()
        record.duration_ms = outcome.duration_ms
        record.result = orjson.dumps(outcome.result).decode() if outcome.ok else None
        record.error = None if outcome.ok else orjson.dumps(outcome.error).decode()
        record.logs = outcome.logs
        if self.metrics:
            self.metrics.finished(version, record, outcome)
        return outcome

    async def _attempt(self, record: InvocationRecord, version: FunctionVersion, event_json: bytes,
                       timeout_s: float) -> InvokeOutcome:
        try:
            # A cold instance comes with its init in flight: the event goes right behind it.
            instance, cold = await self.pool.lease(version)
        except InitFailed as exc:
            record.cold = True
            return _init_failed(exc)
        except SandboxError as exc:
            log.error("could not create an instance of %s: %s", version.function, exc)
            record.cold = True
            return InvokeOutcome(InvocationStatus.FAILED,
                                 error=error_dict("RuntimeExited", f"the instance could not be started: {exc}"))
        record.cold = cold
        record.instance_id = instance.id
        if not self.admission.slots(version.memory_mb).in_force:
            # The node's lease on the tier's slots lapsed while the instance was got ready
            # (frazil.cluster.slots, rule 3): nothing may start on it. Nothing awaits between
            # this check and the event being sent.
            self.pool.release(instance)
            return InvokeOutcome(InvocationStatus.FAILED, error=error_dict(
                "RuntimeExited", f"not started: {lapsed_why(version.memory_mb)}"))
        try:
            user = orjson.loads(record.caller) if record.caller is not None else None
            if self.metrics:
                self.metrics.started(version)  # what it defers runs at invoke()'s first wait, the event sent
            return await instance.invoke(record.id, event_json, cold=cold, timeout_s=timeout_s, user=user)
        except InitFailed as exc:  # the handler did not load: the invocation's failure, as above
            return _init_failed(exc)
        finally:
            self.pool.release(instance)

    def lookup(self, invocation_id: str) -> InvocationRecord | None:
        """A record not yet in the store: running, or finished and waiting for its batch."""
        return self.inflight.get(invocation_id) or self.records.pending(invocation_id)
