"""The database engine: SQLite (WAL) under the data dir by default, PostgreSQL in a cluster."""
from __future__ import annotations

import contextlib
import sqlite3

import orjson
from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from frazil.settings import Settings
from frazil.store import migrate
from frazil.store.datadir import prepare_sqlite_file


SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # NORMAL is durable across a process crash in WAL mode (only power loss can lose the tail).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _use_wal(path: str) -> None:
    """Put the SQLite file at `path` in WAL mode (it stays so: the mode is in its header) before
    any pooled connection opens it. Switched by each connection as it opened, a new file had
    connections that opened before the switch lock it the rollback-journal way, which WAL's
    locks do not see: engines migrating one new file at once both got in ("table functions
    already exists") or were refused ("database is locked")."""
    if not path or path == ":memory:":
        return
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


async def open_engine(settings: Settings) -> AsyncEngine:
    """Create the engine and bring the schema to the newest migration."""
    engine = make_engine(settings)
    await create_schema(engine)
    return engine


def make_engine(settings: Settings) -> AsyncEngine:
    url = settings.db_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.database_url is None:
            # Created 0600 before SQLite opens it: its -wal and -shm files take the same mode.
            prepare_sqlite_file(settings.sqlite_path)
        _use_wal(make_url(url).database)
        engine = create_async_engine(url, pool_size=4, max_overflow=4)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        # orjson reads integers beyond 64 bits as floats, where the stdlib makes ints that no JSON
        # answer could encode: JSONB written before frazil.jsonbounds refused them stays readable.
        engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True,
                                     json_deserializer=orjson.loads)
    return engine


async def create_schema(engine: AsyncEngine) -> None:
    """Create the schema, or upgrade it to the newest migration (see frazil.store.migrate)."""
    await migrate.upgrade(engine)


async def checkpoint_wal(engine: AsyncEngine) -> None:
    """SQLite: copy the write-ahead log into the database file without waiting for anyone
    (PASSIVE), then, only if nobody is using the database at this instant, truncate the log
    file to nothing (TRUNCATE, with no busy wait: it never holds up readers or writers). After
    a bulk delete this is what returns the log's disk space. No-op elsewhere."""
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        await conn.exec_driver_sql("PRAGMA busy_timeout=0")
        try:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            await conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
