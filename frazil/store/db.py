"""The database engine: SQLite (WAL) under the data dir by default, PostgreSQL in a cluster."""
from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from frazil.settings import Settings
from frazil.store.schema import metadata


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across a process crash in WAL mode (only power loss can lose the tail).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def open_engine(settings: Settings) -> AsyncEngine:
    """Create the engine and the schema (idempotent)."""
    engine = make_engine(settings)
    await create_schema(engine)
    return engine


def make_engine(settings: Settings) -> AsyncEngine:
    url = settings.db_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, pool_size=4, max_overflow=4)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    return engine


async def create_schema(engine: AsyncEngine) -> None:
    """Create every table that does not exist yet."""
    # Importing registers the BaaS tables on the shared metadata.
    import frazil.data.schema  # noqa: F401

    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
