"""The record writer's error policy on real databases: a record that cannot be stored is
isolated (the rest of its batch is written) and never retried forever; free text with
characters PostgreSQL refuses round-trips."""
import os
import time

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from frazil.settings import ENV_TEST_POSTGRES_URL, Settings
from frazil.store.db import create_schema, open_engine
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus
from frazil.store.record_writer import RecordWriter
from tests.conftest import require_service

POSTGRES_URL = os.environ.get(ENV_TEST_POSTGRES_URL, "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def record(n: int, **fields) -> InvocationRecord:
    now = time.time()
    return InvocationRecord(id=f"{n:028x}", function="fn", version=1, mode="sync",
                            status=InvocationStatus.SUCCEEDED, created_at=now, attempts=1, started_at=now,
                            finished_at=now, duration_ms=1.0, result='"ok"', logs=f"line {n}\n", **fields)


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request, tmp_path):
    if request.param == "sqlite":
        engine = await open_engine(Settings(data_dir=tmp_path))
        yield engine
        await engine.dispose()
        return
    import asyncpg

    admin_url = POSTGRES_URL.replace("postgresql+asyncpg", "postgresql")
    try:
        conn = await asyncpg.connect(admin_url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require_service(f"PostgreSQL is not reachable at {admin_url}: {exc}")
    schema = f"frazil_writer_{os.getpid()}"
    await conn.execute(f"CREATE SCHEMA {schema}")
    engine = create_async_engine(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
    try:
        await create_schema(engine)
        yield engine
    finally:
        await engine.dispose()
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


async def test_a_bad_record_is_isolated_and_dropped_not_retried(engine):
    """A record no store accepts (a version beyond any integer column) is dropped after being
    tried alone and made safe; the records batched with it are all stored."""
    store = InvocationStore(engine)
    writer = RecordWriter(store)
    good = [record(n) for n in range(7)]
    bad = record(100, instance_id="i")
    bad.version = 2**70
    for r in [*good[:3], bad, *good[3:]]:
        writer.submit(r)
    await writer.flush()  # returns: nothing is retried forever
    assert writer.pending(bad.id) is None and writer.dropped == 1
    for r in good:
        assert await store.get(r.id) == r
    assert await store.get(bad.id) is None


async def test_free_text_with_nul_and_surrogates_round_trips(engine):
    """Logs, results and errors holding U+0000 or a lone surrogate (or starting like an encoded
    value) are stored and read back exactly, through the writer and through updates."""
    store = InvocationStore(engine)
    writer = RecordWriter(store)
    odd = record(1, error='{"message": "a\\u0000b"}')
    odd.logs = "a\x00b\n\ud800 tail\n"
    odd.result = '"\\u0000"'
    lookalike = record(2)
    lookalike.logs = "\ufdd0\"not encoded\""
    writer.submit(odd)
    writer.submit(lookalike)
    await writer.flush()
    assert await store.get(odd.id) == odd
    assert await store.get(lookalike.id) == lookalike
    odd.logs = "updated\x00"
    assert await store.update(odd)
    assert (await store.get(odd.id)).logs == "updated\x00"
