"""Fixtures for the data store: a `DataService` on a real SQLite file and, when reachable, on
PostgreSQL (a database made for this session and dropped after it)."""
from __future__ import annotations

import asyncio
import os
import secrets

import pytest
from argon2 import PasswordHasher
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from frazil.data.schema import data_records, data_tables, data_tokens, data_users
from frazil.data.service import DataService
from frazil.settings import Settings
from frazil.store.db import open_engine
from tests.conftest import require_service

# Where to find a PostgreSQL server that lets us create a database (trust auth in CI).
ENV_TEST_POSTGRES_URL = "FRAZIL_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

# Cheap argon2 for unit tests: hashing cost is not what they test (the server uses the defaults).
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


async def _admin(url, sql: str) -> None:
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                                 database=u.database, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url():
    """The SQLAlchemy URL of a fresh database; skips (or fails, with FRAZIL_REQUIRE_SERVICES=1)
    when PostgreSQL cannot be reached."""
    base = os.environ.get(ENV_TEST_POSTGRES_URL, DEFAULT_POSTGRES_URL)
    name = f"frazil_data_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # refused, unknown host, auth: all mean "not available here"
        require_service(f"PostgreSQL at {make_url(base).render_as_string(hide_password=True)} is not "
                        f"reachable ({type(exc).__name__}: {exc}); set {ENV_TEST_POSTGRES_URL}")
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    yield url
    asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def settings_factory(backend, request, tmp_path):
    """Settings for the backend under test; keyword arguments override fields."""
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None

    def make(**overrides) -> Settings:
        return Settings(data_dir=tmp_path / "data", database_url=url, **overrides)

    return make


@pytest.fixture
async def service_factory(settings_factory):
    """`await service_factory(**settings)` → a DataService on an empty store; engines are
    disposed of after the test."""
    engines = []

    async def make(**overrides) -> DataService:
        settings = settings_factory(**overrides)
        engine = await open_engine(settings)
        engines.append(engine)
        if engine.dialect.name == "postgresql":  # one database per session: start empty
            async with engine.begin() as conn:
                for table in (data_records, data_tables, data_tokens, data_users):
                    await conn.execute(delete(table))
        service = DataService(engine, settings)
        service.accounts.hasher = FAST_HASHER
        return service

    yield make
    for engine in engines:
        await engine.dispose()


@pytest.fixture
async def data(service_factory) -> DataService:
    return await service_factory()
