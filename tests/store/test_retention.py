"""Retention on real SQLite and PostgreSQL: the pruner deletes finished records past the age
and count limits, in batches, never a queued or running one, and (SQLite) leaves the
write-ahead log checkpointed."""
from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
from sqlalchemy import event

from frazil.settings import Settings
from frazil.store.db import open_engine
from frazil.store.ids import id_floor
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus
from frazil.store.retention import Pruner, Retention

NOW = time.time()
DAY = 24 * 3600.0


def record(function: str, age_s: float, n: int, status=InvocationStatus.SUCCEEDED) -> InvocationRecord:
    """A record created `age_s` ago; its id is made for that moment, as new_id() would have."""
    created = NOW - age_s
    return InvocationRecord(id=f"{id_floor(created)}{n:04x}{secrets.token_hex(6)}", function=function, version=1,
                            mode="async" if status is InvocationStatus.QUEUED else "sync", status=status,
                            created_at=created, attempts=1, event='{"e": 1}', result='{"r": 1}', logs="x" * 100)


@pytest.fixture
async def store(database_url_factory, tmp_path):
    engine = await open_engine(Settings(data_dir=tmp_path / "data", database_url=await database_url_factory()))
    yield InvocationStore(engine)
    await engine.dispose()


def pruner(store: InvocationStore, *, max_age_s=0.0, max_per_function=0, batch=4) -> Pruner:
    return Pruner(store.engine, store, Retention(max_age_s, max_per_function), interval_s=60, batch=batch,
                  pause_s=0, clock=lambda: NOW)


async def ids_of(store: InvocationStore, function: str) -> list[str]:
    return [r.id for r in await store.list_for_function(function, limit=1000)]


class DeleteSizes:
    """The number of rows each DELETE statement removed."""

    def __init__(self, engine):
        self.sizes: list[int] = []
        event.listen(engine.sync_engine, "after_cursor_execute", self._after)

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE"):
            self.sizes.append(cursor.rowcount)


class TestRetention:
    async def test_count_limit_keeps_each_functions_newest(self, store):
        """Beyond N records per function the oldest finished ones go, in batches; queued and
        running records stay whatever their place, and other functions are untouched."""
        busy = [record("busy", age_s=100 - n, n=n) for n in range(30)]
        waiting = [record("busy", age_s=200, n=n, status=s)
                   for n, s in enumerate([InvocationStatus.QUEUED, InvocationStatus.RUNNING])]
        quiet = [record("quiet", age_s=50 - n, n=n) for n in range(5)]
        await store.insert_many(busy + waiting + quiet)
        deletes = DeleteSizes(store.engine)

        assert await pruner(store, max_per_function=10).prune() == 20
        assert await ids_of(store, "busy") == [r.id for r in busy[-10:][::-1]] + [r.id for r in waiting][::-1]
        assert await ids_of(store, "quiet") == [r.id for r in quiet[::-1]]
        assert max(deletes.sizes) <= 4 and sum(deletes.sizes) == 20, deletes.sizes
        assert await pruner(store, max_per_function=10).prune() == 0

    async def test_age_limit_deletes_old_finished_records(self, store):
        """Records older than the age limit go, with their event, result and logs; a queued
        record older than that (a long delay) stays."""
        old = [record(f"fn{n % 3}", age_s=8 * DAY + n, n=n) for n in range(11)]
        young = [record(f"fn{n % 3}", age_s=6 * DAY - n, n=n) for n in range(3)]
        delayed = record("fn0", age_s=20 * DAY, n=99, status=InvocationStatus.QUEUED)
        await store.insert_many(old + young + [delayed])

        assert await pruner(store, max_age_s=7 * DAY).prune() == 11
        remaining = {i for f in ("fn0", "fn1", "fn2") for i in await ids_of(store, f)}
        assert remaining == {r.id for r in young} | {delayed.id}
        assert await store.get(old[0].id) is None
        assert (await store.get(delayed.id)).event == '{"e": 1}'

    async def test_both_limits_together(self, store):
        """A record goes when either limit says so."""
        records = [record("fn", age_s=10 * DAY - n * DAY, n=n) for n in range(10)]  # 10 days old .. 1 day old
        await store.insert_many(records)
        assert await pruner(store, max_age_s=7 * DAY, max_per_function=5).prune() == 5
        assert await ids_of(store, "fn") == [r.id for r in records[5:][::-1]]

    async def test_sqlite_log_is_checkpointed_after_pruning(self, store, backend):
        """After a pass that deleted records, SQLite's write-ahead log is emptied (nobody else
        was using the database)."""
        if backend != "sqlite":
            pytest.skip("the write-ahead log is SQLite's")
        await store.insert_many([record("fn", age_s=DAY, n=n) for n in range(2000)])
        wal = Path(store.engine.url.database + "-wal")
        assert wal.stat().st_size > 0
        assert await pruner(store, max_per_function=1, batch=500).prune() == 1999
        assert wal.stat().st_size == 0
