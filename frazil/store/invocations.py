"""Invocation records: the durable history, and the async queue (rows with status queued)."""
from __future__ import annotations

from dataclasses import fields
from operator import attrgetter

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from frazil.store.ids import id_floor
from frazil.store.lifecycle import started, step
from frazil.store.models import InvocationRecord, InvocationStatus, Trigger
from frazil.store.schema import invocations
from frazil.store.textcodec import from_column, to_column

_RUNNING_ASYNC = and_(invocations.c.status == InvocationStatus.RUNNING.value, invocations.c.mode == "async")

# Only these records may be pruned: queued and running ones are still work to do.
_FINAL = [status.value for status in InvocationStatus if status.final]

_COLUMNS = [f.name for f in fields(InvocationRecord)]
_LIST_COLUMNS = [c for c in _COLUMNS if c not in ("event",)]
# Columns holding what a function printed, returned or raised, or a caller sent: they go
# through frazil.store.textcodec, as PostgreSQL refuses some characters (U+0000) in text.
_FREE_TEXT = frozenset({"logs", "result", "error", "event"})


_FREE_TEXT_AT = [i for i, name in enumerate(_COLUMNS) if name in _FREE_TEXT]
# Enum fields, stored as their values.
_ENUMS_AT = [i for i, name in enumerate(_COLUMNS) if name in ("status", "trigger")]
# Every field in one C call: the sync path turns each record into a row.
_FIELDS = attrgetter(*_COLUMNS)


def _row(record: InvocationRecord) -> list:
    """The record's column values in _COLUMNS order, as stored."""
    row = list(_FIELDS(record))
    for i in _ENUMS_AT:
        row[i] = row[i].value
    for i in _FREE_TEXT_AT:
        row[i] = to_column(row[i])
    return row


def _row_values(record: InvocationRecord) -> dict:
    return dict(zip(_COLUMNS, _row(record)))


def _insert_sql(paramstyle: str) -> str:
    """INSERT of every column with the driver's own placeholders."""
    if paramstyle == "qmark":
        marks = ["?"] * len(_COLUMNS)
    elif paramstyle in ("numeric_dollar", "numeric"):
        prefix = "$" if paramstyle == "numeric_dollar" else ":"
        marks = [f"{prefix}{i}" for i in range(1, len(_COLUMNS) + 1)]
    elif paramstyle == "format":
        marks = ["%s"] * len(_COLUMNS)
    else:
        raise ValueError(f"unsupported DB-API paramstyle {paramstyle!r}")
    # A record already stored is left as it is: one replayed from the journal (record_journal)
    # may have been committed before the crash.
    return (f"INSERT INTO {invocations.name} ({', '.join(_COLUMNS)}) VALUES ({', '.join(marks)}) "
            "ON CONFLICT (id) DO NOTHING")


def _record(row) -> InvocationRecord:
    data = dict(row._mapping)
    data["status"] = InvocationStatus(data["status"])
    for name in _FREE_TEXT.intersection(data):
        data[name] = from_column(data[name])
    # Records written before triggers were recorded (migration 0003) came from the API.
    data["trigger"] = Trigger(data["trigger"]) if data.get("trigger") else Trigger.API
    data["depth"] = data.get("depth") or 0
    return InvocationRecord(**data)


class InvocationStore:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def insert(self, record: InvocationRecord) -> None:
        """Insert and commit one record (an async invocation is accepted only after this)."""
        async with self.engine.begin() as conn:
            await conn.execute(invocations.insert().values(**_row_values(record)))

    async def insert_many(self, records: list[InvocationRecord], conn: AsyncConnection | None = None) -> None:
        """Insert many new records in one transaction (skipping those already stored): one
        driver-level executemany of tuples (SQLAlchemy's per-row parameter processing was a
        quarter of a warm invocation's CPU; the sync path writes every record through here).
        With `conn`, in the transaction open on it (a table change's, frazil.scheduler.table_events)."""
        if not records:
            return
        rows = [tuple(_row(r)) for r in records]
        if conn is not None:
            await conn.exec_driver_sql(_insert_sql(conn.dialect.paramstyle), rows)
            return
        async with self.engine.begin() as conn:
            await conn.exec_driver_sql(_insert_sql(conn.dialect.paramstyle), rows)

    async def update(self, record: InvocationRecord, *, expect: InvocationStatus | None = None) -> bool:
        """Overwrite one record; with `expect`, only if its stored status still is that one."""
        values = _row_values(record)
        del values["id"]
        condition = invocations.c.id == record.id
        if expect is not None:
            condition = and_(condition, invocations.c.status == expect.value)
        async with self.engine.begin() as conn:
            result = await conn.execute(update(invocations).where(condition).values(**values))
        return result.rowcount == 1

    async def get(self, invocation_id: str) -> InvocationRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(invocations).where(invocations.c.id == invocation_id))).first()
        return _record(row) if row else None

    async def list_for_function(self, function: str, *, limit: int = 50, before: str | None = None,
                                after: str | None = None, ascending: bool = False) -> list[InvocationRecord]:
        cols = [invocations.c[name] for name in _LIST_COLUMNS]
        query = select(*cols).where(invocations.c.function == function)
        if before:
            query = query.where(invocations.c.id < before)
        if after:
            query = query.where(invocations.c.id > after)
        order = invocations.c.id.asc() if ascending else invocations.c.id.desc()
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(order).limit(limit))
            return [_record(row) for row in rows]

    async def list(self, *, function: str | None = None, status: InvocationStatus | None = None,
                   mode: str | None = None, before: str | None = None, limit: int = 50) -> list[InvocationRecord]:
        """Records newest first (without their events), filtered by any of function, status
        and mode; with `before`, only older ids (a page)."""
        cols = [invocations.c[name] for name in _LIST_COLUMNS]
        query = select(*cols)
        if function is not None:
            query = query.where(invocations.c.function == function)
        if status is not None:
            query = query.where(invocations.c.status == status.value)
        if mode is not None:
            query = query.where(invocations.c.mode == mode)
        if before:
            query = query.where(invocations.c.id < before)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(invocations.c.id.desc()).limit(limit))
            return [_record(row) for row in rows]

    # --- retention (frazil.store.retention) ---------------------------------------------

    async def functions_with_records(self) -> list[str]:
        """Every function name that has records, including deleted functions'. One index seek
        per name (a skip scan), not a read of every record."""
        names: list[str] = []
        async with self.engine.connect() as conn:
            while True:
                query = select(func.min(invocations.c.function))
                if names:
                    query = query.where(invocations.c.function > names[-1])
                name = (await conn.execute(query)).scalar_one_or_none()
                if name is None:
                    return names
                names.append(name)

    async def prune_older_than(self, cutoff: float, batch: int) -> int:
        """Delete up to `batch` finished records created before `cutoff` (epoch seconds), oldest
        first; answers how many. The id bound makes it a range of the primary key."""
        victims = (select(invocations.c.id)
                   .where(and_(invocations.c.id < id_floor(cutoff), invocations.c.created_at < cutoff,
                               invocations.c.status.in_(_FINAL)))
                   .order_by(invocations.c.id).limit(batch))
        return await self._delete(victims)

    async def newest_beyond(self, function: str, keep: int) -> str | None:
        """The id of `function`'s newest record that is not among its `keep` newest (None when
        it has no more than `keep`): everything up to it is past the count limit."""
        query = (select(invocations.c.id).where(invocations.c.function == function)
                 .order_by(invocations.c.id.desc()).offset(keep).limit(1))
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def prune_through(self, function: str, last_id: str, batch: int) -> int:
        """Delete up to `batch` finished records of `function` with ids up to `last_id`, oldest
        first; answers how many. Records made later have larger ids (in a cluster, to the
        accuracy of the nodes' clocks), so a bound taken once stays right while new ones arrive."""
        victims = (select(invocations.c.id)
                   .where(and_(invocations.c.function == function, invocations.c.id <= last_id,
                               invocations.c.status.in_(_FINAL)))
                   .order_by(invocations.c.id).limit(batch))
        return await self._delete(victims)

    async def _delete(self, victims) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(invocations).where(invocations.c.id.in_(victims.scalar_subquery())))
        return result.rowcount

    # --- the async queue -----------------------------------------------------------------

    async def due(self, now: float, limit: int) -> list[InvocationRecord]:
        """Queued invocations whose next attempt is due, oldest first."""
        query = (select(invocations)
                 .where(and_(invocations.c.status == InvocationStatus.QUEUED.value,
                             or_(invocations.c.next_attempt_at.is_(None), invocations.c.next_attempt_at <= now)))
                 .order_by(invocations.c.id).limit(limit))
        async with self.engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def queued_async(self, created_before: float, after_id: str, limit: int,
                           conn: AsyncConnection) -> list[str]:
        """The ids of async invocations still queued that were created before `created_before`,
        from after `after_id` on, in id order (the JetStream queue's republisher, in its
        transaction `conn`)."""
        query = (select(invocations.c.id)
                 .where(and_(invocations.c.status == InvocationStatus.QUEUED.value, invocations.c.mode == "async",
                             invocations.c.created_at < created_before, invocations.c.id > after_id))
                 .order_by(invocations.c.id).limit(limit))
        return list((await conn.execute(query)).scalars())

    async def next_due_time(self) -> float | None:
        """The earliest time something in the queue needs a dispatcher: a queued invocation
        falls due, or a running async one's lease lapses."""
        due = select(func.min(invocations.c.next_attempt_at)).where(
            invocations.c.status == InvocationStatus.QUEUED.value)
        lapse = select(func.min(invocations.c.lease_until)).where(_RUNNING_ASYNC)
        async with self.engine.connect() as conn:
            times = [(await conn.execute(q)).scalar_one_or_none() for q in (due, lapse)]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    async def count_queued(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).where(
                invocations.c.status == InvocationStatus.QUEUED.value))).scalar_one()

    async def count_unsettled(self) -> int:
        """Async invocations not final yet: queued, or running under a claim."""
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).where(or_(
                invocations.c.status == InvocationStatus.QUEUED.value, _RUNNING_ASYNC)))).scalar_one()

    # --- claims (leases): the invariants are stated in frazil.scheduler.dispatcher (the database
    # queue) and frazil.cluster.consumer (JetStream) ----------------------------------------------

    async def claim(self, record: InvocationRecord, owner: str, started_at: float, lease_until: float) -> bool:
        """Take an invocation for `owner` until `lease_until`, counting the attempt in the same
        write, if it is still as `record` was read: queued (the database queue), or queued or
        running (the JetStream queue takes a running one over when the broker redelivers it,
        frazil.cluster.consumer). True when this call made the claim (its epoch is then
        `record.attempts + 1`), false when another claim or an outcome came first. The owner,
        a node's id, is the record's `node` from then on: the node running it."""
        condition = and_(invocations.c.id == record.id, invocations.c.status == record.status.value,
                         invocations.c.attempts == record.attempts)
        async with self.engine.begin() as conn:
            result = await conn.execute(update(invocations).where(condition).values(
                status=started(record.status, record.id).value, owner=owner, node=owner, started_at=started_at,
                lease_until=lease_until, attempts=record.attempts + 1))
        return result.rowcount == 1

    async def settle(self, record: InvocationRecord, owner: str, attempt: int) -> bool:
        """Write an attempt's outcome (final, or back in the queue for a retry) only while
        `owner` still holds the claim of that `attempt`: false when the lease was taken back
        meanwhile, and the late outcome is dropped."""
        values = _row_values(record)
        del values["id"]
        values["lease_until"] = None
        condition = and_(invocations.c.id == record.id, invocations.c.status == InvocationStatus.RUNNING.value,
                         invocations.c.owner == owner, invocations.c.attempts == attempt)
        async with self.engine.begin() as conn:
            result = await conn.execute(update(invocations).where(condition).values(**values))
        return result.rowcount == 1

    async def finish_unclaimed(self, record: InvocationRecord, was: InvocationStatus) -> bool:
        """Write a final outcome that no attempt produced (throttled, function gone) over a
        record read with status `was`, only if it is still so (same status, same attempt
        count): false when a claim or an outcome came first."""
        values = _row_values(record)
        del values["id"]
        values["lease_until"] = None
        condition = and_(invocations.c.id == record.id, invocations.c.status == was.value,
                         invocations.c.attempts == record.attempts)
        async with self.engine.begin() as conn:
            result = await conn.execute(update(invocations).where(condition).values(**values))
        return result.rowcount == 1

    async def withdraw(self, record: InvocationRecord) -> bool:
        """Delete a new async invocation that nobody has claimed yet (its publish failed, so it
        is refused): false when an invoker had claimed it already, so it was delivered."""
        condition = and_(invocations.c.id == record.id, invocations.c.status == InvocationStatus.QUEUED.value,
                         invocations.c.attempts == 0)
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(invocations).where(condition))
        return result.rowcount == 1

    async def take_back_expired(self, now: float) -> int:
        """Put back in the queue every running async invocation whose lease lapsed before
        `now`, whoever held it; answers how many."""
        condition = and_(_RUNNING_ASYNC, invocations.c.lease_until < now)
        async with self.engine.begin() as conn:
            result = await conn.execute(update(invocations).where(condition).values(
                status=step(InvocationStatus.RUNNING, InvocationStatus.QUEUED).value, owner=None, lease_until=None,
                next_attempt_at=None))
        return result.rowcount

    async def requeue_orphans(self) -> int:
        """Put back in the queue every async invocation that was running when the platform
        stopped (the embedded node, at its start: it was the only one); answers how many."""
        async with self.engine.begin() as conn:
            result = await conn.execute(update(invocations).where(_RUNNING_ASYNC).values(
                status=step(InvocationStatus.RUNNING, InvocationStatus.QUEUED).value, owner=None,
                lease_until=None))
        return result.rowcount
