"""What a committed change of a record tells the rest of the platform (table triggers).

`DataService` hands every change of a record to its `ChangeSink` inside the transaction that
makes the change, so the change and what it fires (frazil.scheduler.table_events queues the
invocations there) commit together or not at all: a crash between them loses neither.

The data store knows nothing of functions: it asks the sink, before a write, who listens to
that operation on that table (`listeners`; None when nobody does, and the write then takes
its plain one-statement path), gives the changes back with what it got (`record`), and says
when they committed (`committed`, with what `record` answered).

Dropping a table is not a change of its records: it fires nothing.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection


class ChangeOp(str, enum.Enum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True)
class Change:
    """One record's change, as the caller sees records (frazil.data.records.view)."""

    op: ChangeOp
    record: dict | None  # after the change; None for a delete
    old: dict | None  # before it; None for an insert


@dataclass(frozen=True)
class Origin:
    """Who started something, as far as what it starts cares: the end user (a function's
    `context.user`) and the depth in the chain of calls between functions of what it starts."""

    user: dict | None = None  # {"id", "username"}; None for the admin and anonymous callers
    depth: int = 0


class ChangeSink(Protocol):
    async def listeners(self, table: str, op: ChangeOp) -> Any | None:
        """Who listens to `op` on `table`, or None. Called before the write's transaction:
        it must not wait on a connection the write would hold."""

    async def record(self, conn: AsyncConnection, table: str, listeners: Any, changes: list[Change],
                     origin: Origin) -> Any:
        """Make what `changes` fire durable on `conn`, inside the write's transaction; answer
        what `committed` needs."""

    def committed(self, fired: Any) -> None:
        """The transaction that `record` wrote in (and answered `fired`) has committed."""
