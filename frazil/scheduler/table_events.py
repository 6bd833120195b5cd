"""Table triggers: each committed change of a record fires one async invocation (trigger
`table`) of every active function whose `{"type": "table", ...}` trigger names that table and
operation (frazil.deploy.config.TableTrigger), with the event
`{"table", "op", "record", "old"}` (`record` null after a delete, `old` null after an insert).

`TableEvents` is the data store's change sink (frazil.data.changes). Durability: the queued
records are inserted by the write's own transaction (the data tables and the async queue
share one database), so a change and its invocations commit together, or neither does; after
the commit the dispatcher is woken at once.

A loop - a function whose writes fire itself, directly or through others - is stopped at the
depth limit of calls between functions (`MAX_CHAIN_DEPTH`): a write made through the SDK fires
invocations one deeper than the invocation that wrote, and one that would be deeper than the
limit is recorded `failed` with a `ChainTooDeep` error instead of queued (the write itself
stands).

An event larger than the sync payload limit (records are up to `max_record_bytes` each, and an
update carries two) keeps only the ids of `record` and `old`, with `"truncated": true`: the
function reads the record itself.

Who listens is cached: the active versions' table triggers, read whole when first needed. The
platform calls `invalidate()` after every deploy, rollback, settings change and delete on this
node; where other nodes deploy too (a cluster), the cache is also read again after `ttl_s`.
"""
from __future__ import annotations

import asyncio
import time

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from frazil.data.changes import Change, ChangeOp, Origin
from frazil.scheduler.entry import MAX_CHAIN_DEPTH, Call, Entry, Mode
from frazil.store.functions import FunctionStore
from frazil.store.lifecycle import transition
from frazil.store.models import FunctionVersion, InvocationRecord, InvocationStatus, Trigger

TABLE = "table"  # the trigger `type` this module fires

Listeners = tuple[FunctionVersion, ...]
Index = dict[tuple[str, ChangeOp], Listeners]


def index_of(versions: list[FunctionVersion]) -> Index:
    """(table, op) -> the versions whose table triggers listen to it (one entry per version)."""
    index: dict[tuple[str, ChangeOp], list[FunctionVersion]] = {}
    for version in versions:
        for trigger in version.triggers:
            if trigger.get("type") != TABLE:
                continue
            for op in trigger["on"]:
                listeners = index.setdefault((trigger["table"], ChangeOp(op)), [])
                if version not in listeners:
                    listeners.append(version)
    return {key: tuple(value) for key, value in index.items()}


class TableEvents:
    def __init__(self, functions: FunctionStore, entry: Entry, *, max_event_bytes: int, ttl_s: float | None = None):
        self._functions = functions
        self._entry = entry
        self._max_event_bytes = max_event_bytes
        self._ttl_s = ttl_s
        self._index: Index | None = None
        self._loaded_at = 0.0
        # Bumped by invalidate(): a read that began before a deploy must not be kept after it.
        self._generation = 0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._index = None
        self._generation += 1

    async def listeners(self, table: str, op: ChangeOp) -> Listeners | None:
        return (await self._current()).get((table, op))

    def _fresh(self) -> Index | None:
        if self._index is None or (self._ttl_s is not None and time.monotonic() - self._loaded_at >= self._ttl_s):
            return None
        return self._index

    async def _current(self) -> Index:
        index = self._fresh()
        if index is not None:
            return index
        async with self._lock:  # one read of the triggers at a time, however many writes wait
            index = self._fresh()
            if index is not None:
                return index
            generation, loaded_at = self._generation, time.monotonic()
            index = index_of(await self._functions.scheduled())
            if generation == self._generation:
                self._index, self._loaded_at = index, loaded_at
            return index

    async def record(self, conn: AsyncConnection, table: str, listeners: Listeners, changes: list[Change],
                     origin: Origin) -> list[InvocationRecord]:
        call = Call(trigger=Trigger.TABLE, mode=Mode.ASYNC, user=origin.user, depth=origin.depth)
        records = []
        for change in changes:
            event = self._event(table, change)
            for version in listeners:
                record = self._entry.queued(version, event, call)
                if call.depth > MAX_CHAIN_DEPTH:
                    _refuse(record, f"this table event would start an invocation {call.depth} calls deep: a chain "
                                    f"of calls between functions (table events included) may be at most "
                                    f"{MAX_CHAIN_DEPTH} deep, so a function whose writes fire itself stops here")
                records.append(record)
        await self._entry.store.insert_many(records, conn=conn)
        return [r for r in records if r.status is InvocationStatus.QUEUED]

    def committed(self, fired: list[InvocationRecord] | None) -> None:
        if fired:
            self._entry.notify(fired)

    def _event(self, table: str, change: Change) -> bytes:
        event = orjson.dumps({"table": table, "op": change.op.value, "record": change.record, "old": change.old})
        if len(event) <= self._max_event_bytes:
            return event
        return orjson.dumps({"table": table, "op": change.op.value, "record": _id_only(change.record),
                             "old": _id_only(change.old), "truncated": True})


def _id_only(record: dict | None) -> dict | None:
    return None if record is None else {"id": record["id"]}


def _refuse(record: InvocationRecord, message: str) -> None:
    """Make a queued record a final `failed` one that never runs: a dead letter that says why."""
    transition(record, InvocationStatus.FAILED)
    record.finished_at = record.created_at
    record.next_attempt_at = record.expires_at = None
    record.error = orjson.dumps({"type": "ChainTooDeep", "message": message, "stack": ""}).decode()
