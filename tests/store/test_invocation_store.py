"""The invocation store on real databases: batched inserts round-trip every field."""
import os
import time

from sqlalchemy.ext.asyncio import create_async_engine

from frazil.settings import ENV_TEST_POSTGRES_URL, Settings
from frazil.store.db import create_schema, open_engine
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus
from frazil.store.record_writer import RecordWriter
from tests.conftest import require_service

POSTGRES_URL = os.environ.get(ENV_TEST_POSTGRES_URL, "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def sample(n: int) -> InvocationRecord:
    now = time.time()
    return InvocationRecord(id=f"{n:028x}", function="fn", version=3, mode="sync",
                            status=InvocationStatus.FAILED if n % 2 else InvocationStatus.SUCCEEDED,
                            created_at=now, attempts=1, cold=bool(n % 3 == 0), instance_id="i1",
                            started_at=now, finished_at=now + 0.001, duration_ms=1.25,
                            result=None if n % 2 else '{"n": %d}' % n,
                            error='{"type": "E", "message": "m", "stack": ""}' if n % 2 else None,
                            logs=f"line {n}\n")


async def check_round_trip(engine) -> None:
    store = InvocationStore(engine)
    records = [sample(n) for n in range(25)]
    writer = RecordWriter(store)
    for record in records:
        writer.submit(record)
    assert writer.pending(records[3].id) is records[3]
    await writer.flush()
    assert writer.pending(records[3].id) is None
    for record in records:
        stored = await store.get(record.id)
        assert stored == record


async def test_batched_records_round_trip_on_sqlite(tmp_path):
    """Every field written by the batch writer reads back equal (SQLite)."""
    engine = await open_engine(Settings(data_dir=tmp_path))
    try:
        await check_round_trip(engine)
    finally:
        await engine.dispose()


async def test_batched_records_round_trip_on_postgresql(tmp_path):
    """The same on PostgreSQL, in a schema of its own."""
    import asyncpg

    admin_url = POSTGRES_URL.replace("postgresql+asyncpg", "postgresql")
    try:
        conn = await asyncpg.connect(admin_url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require_service(f"PostgreSQL is not reachable at {admin_url}: {exc}")
    schema = f"frazil_test_{os.getpid()}"
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        engine = create_async_engine(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
        try:
            await create_schema(engine)
            await check_round_trip(engine)
        finally:
            await engine.dispose()
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()
