"""Each list reads an index in its own order: the database's plan for the store's real query
has no sort step and no full scan (SQLite and PostgreSQL). Timings are in
scripts/measure_lists.py; plans do not depend on the machine."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import event, text

from frazil.data.acl import ADMIN
from frazil.data.service import DataService
from frazil.settings import Settings
from frazil.store.db import open_engine
from frazil.store.functions import FunctionStore
from frazil.store.ids import new_id
from frazil.store.invocations import InvocationStore
from frazil.store.models import Access, InvocationRecord, InvocationStatus


class Statements:
    """Records the SQL and parameters an engine runs, to EXPLAIN them afterwards."""

    def __init__(self, engine):
        self.seen: list[tuple[str, object]] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            self.seen.append((statement, parameters))

    def clear(self) -> None:
        self.seen.clear()


async def plan(engine, statement: str, parameters) -> str:
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(row[-1] for row in rows)
        # The tables are small: without this, PostgreSQL may rightly prefer to read them whole.
        await conn.execute(text("SET enable_seqscan = off"))
        rows = await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return "\n".join(row[0] for row in rows)


@pytest.fixture
async def filled(database_url_factory, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", database_url=await database_url_factory())
    engine = await open_engine(settings)
    now = time.time()
    await InvocationStore(engine).insert_many([
        InvocationRecord(id=new_id(), function=f"fn{n % 3}", version=1, mode="sync",
                         status=InvocationStatus.SUCCEEDED, created_at=now) for n in range(3000)])
    functions = FunctionStore(engine)
    for name in ("a", "b"):
        n = await functions.begin_version(name, runtime="python3.11", handler="index.main", memory_mb=128,
                                          timeout_s=1.0, env={}, resident=0, access=Access.ADMIN, http=False, bundle_hash="0" * 64,
                                          bundle_bytes=1)
        await functions.finish_version(name, n, ok=True, build_log="")
    data = DataService(engine, settings)
    for n in range(20):
        await data.insert(f"t{n % 2}", {"n": n}, ADMIN)
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:  # statistics, as autovacuum would gather them
            await conn.execute(text("ANALYZE"))
    yield engine, settings
    await engine.dispose()


def assert_ordered_by_index(text_plan: str, dialect: str) -> None:
    if dialect == "sqlite":
        assert "TEMP B-TREE" not in text_plan, text_plan  # a sort step
        assert "SCAN invocations" not in text_plan and "SCAN data_records" not in text_plan, text_plan
    else:
        assert "Sort" not in text_plan and "Seq Scan" not in text_plan, text_plan


async def test_lists_read_their_index_in_order(filled):
    """A function's invocations (both directions, after a cursor), versions, functions, tables
    and a table's records: every page query is an index range in the list's order."""
    engine, settings = filled
    statements = Statements(engine)
    store, functions, data = InvocationStore(engine), FunctionStore(engine), DataService(engine, settings)
    middle = (await store.list_for_function("fn1", limit=50))[-1].id
    calls = [
        lambda: store.list_for_function("fn1", limit=51),
        lambda: store.list_for_function("fn1", limit=51, before=middle),
        lambda: store.list_for_function("fn1", limit=51, after=middle, ascending=True),
        lambda: functions.versions_of("a", before=2, limit=3),
        lambda: functions.list_active(after="a", limit=3),
        lambda: data.list_tables(ADMIN, after="t0", limit=3),
        lambda: data.find_page("t1", None, ADMIN, limit=5, after_id="0"),
    ]
    for call in calls:
        statements.clear()
        await call()
        for statement, parameters in statements.seen:
            assert_ordered_by_index(await plan(engine, statement, parameters), engine.dialect.name)
