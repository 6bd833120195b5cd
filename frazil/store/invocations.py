"""Invocation records: the durable history, and the async queue (rows with status queued)."""
from __future__ import annotations

from dataclasses import fields

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from frazil.store.models import InvocationRecord, InvocationStatus
from frazil.store.schema import invocations

_COLUMNS = [f.name for f in fields(InvocationRecord)]
_LIST_COLUMNS = [c for c in _COLUMNS if c not in ("event",)]


def _row_values(record: InvocationRecord) -> dict:
    values = {name: getattr(record, name) for name in _COLUMNS}
    values["status"] = record.status.value
    return values


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
    return f"INSERT INTO {invocations.name} ({', '.join(_COLUMNS)}) VALUES ({', '.join(marks)})"


def _record(row) -> InvocationRecord:
    data = dict(row._mapping)
    data["status"] = InvocationStatus(data["status"])
    return InvocationRecord(**data)


class InvocationStore:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def insert(self, record: InvocationRecord) -> None:
        """Insert and commit one record (an async invocation is accepted only after this)."""
        async with self.engine.begin() as conn:
            await conn.execute(invocations.insert().values(**_row_values(record)))

    async def insert_many(self, records: list[InvocationRecord]) -> None:
        """Insert many new records in one transaction: one driver-level executemany of
        tuples (SQLAlchemy's per-row parameter processing was a quarter of a warm
        invocation's CPU; the sync path writes every record through here)."""
        if not records:
            return
        rows = [tuple(r.status.value if name == "status" else getattr(r, name) for name in _COLUMNS)
                for r in records]
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

    # --- the async queue -----------------------------------------------------------------

    async def due(self, now: float, limit: int) -> list[InvocationRecord]:
        """Queued invocations whose next attempt is due, oldest first."""
        query = (select(invocations)
                 .where(and_(invocations.c.status == InvocationStatus.QUEUED.value,
                             or_(invocations.c.next_attempt_at.is_(None), invocations.c.next_attempt_at <= now)))
                 .order_by(invocations.c.id).limit(limit))
        async with self.engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def next_due_time(self) -> float | None:
        from sqlalchemy import func

        query = select(func.min(invocations.c.next_attempt_at)).where(
            invocations.c.status == InvocationStatus.QUEUED.value)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def count_queued(self) -> int:
        from sqlalchemy import func

        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).where(
                invocations.c.status == InvocationStatus.QUEUED.value))).scalar_one()

    async def requeue_orphans(self, owner: str | None = None) -> int:
        """Put back in the queue the async invocations that were running when their node died."""
        condition = and_(invocations.c.status == InvocationStatus.RUNNING.value, invocations.c.mode == "async")
        if owner is not None:
            condition = and_(condition, invocations.c.owner == owner)
        async with self.engine.begin() as conn:
            result = await conn.execute(update(invocations).where(condition).values(
                status=InvocationStatus.QUEUED.value, owner=None))
        return result.rowcount
