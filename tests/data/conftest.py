"""Fixtures for the data store: a `DataService` on a real SQLite file and, when reachable, on
PostgreSQL (a database made for this session and dropped after it)."""
from __future__ import annotations

import asyncio

import pytest
from argon2 import PasswordHasher
from sqlalchemy import delete

from frazil.data.schema import data_records, data_tables, data_tokens, data_users
from frazil.data.service import DataService
from frazil.settings import Settings
from frazil.store.db import open_engine
from tests.postgres import create_database, database_url, drop_database

# Cheap argon2 for unit tests: hashing cost is not what they test (the server uses the defaults).
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(scope="session")
def postgres_url():
    """The SQLAlchemy URL of a fresh database, dropped after the session."""
    name = asyncio.run(create_database("frazil_data"))
    yield database_url(name)
    asyncio.run(drop_database(name))


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
