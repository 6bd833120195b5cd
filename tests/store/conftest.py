"""Databases for the store's tests: `database_url_factory()` makes an empty database of the
test's backend (a SQLite file in tmp_path, or a PostgreSQL database created for the call) and
drops the PostgreSQL ones after the test."""
from __future__ import annotations

import pytest

from tests.postgres import create_database, database_url, drop_database


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
async def database_url_factory(backend, tmp_path):
    """`await database_url_factory()` → the SQLAlchemy URL of a new, empty database."""
    made: list[str] = []

    async def make() -> str:
        if backend == "sqlite":
            path = tmp_path / f"db-{len(made)}" / "frazil.db"
            path.parent.mkdir()
            made.append(str(path))
            return f"sqlite+aiosqlite:///{path}"
        name = await create_database("frazil_store")
        made.append(name)
        return database_url(name)

    yield make
    if backend == "postgresql":
        for name in made:
            await drop_database(name)
