"""Databases of their own for tests on this machine's PostgreSQL: each test (or session) makes
one with a unique name and drops it after, so parallel runs and CI never share state.

Where PostgreSQL cannot be reached, making one skips the test (fails with
FRAZIL_REQUIRE_SERVICES=1, as in CI), saying why.
"""
from __future__ import annotations

import os
import secrets
from contextlib import asynccontextmanager

from sqlalchemy.engine import make_url

from frazil.settings import ENV_TEST_POSTGRES_URL
from tests.conftest import require_service

# Where to find a PostgreSQL server that lets us create a database (trust auth in CI).
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    """The SQLAlchemy URL of the test PostgreSQL server's maintenance database."""
    return os.environ.get(ENV_TEST_POSTGRES_URL, DEFAULT_POSTGRES_URL)


def database_url(name: str) -> str:
    """The SQLAlchemy URL of database `name` on the test server."""
    return make_url(server_url()).set(database=name).render_as_string(hide_password=False)


async def postgres_admin(sql: str, url: str | None = None) -> None:
    """Run one statement on `url` (default: the maintenance database), e.g. CREATE DATABASE."""
    import asyncpg

    u = make_url(url or server_url())
    conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                                 database=u.database or "postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(prefix: str) -> str:
    """Create an empty database named `<prefix>_<random>` and return its name."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        await postgres_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # refused, unknown host, auth: all mean "not available here"
        require_service(f"PostgreSQL at {make_url(server_url()).render_as_string(hide_password=True)} is not "
                        f"reachable ({type(exc).__name__}: {exc}); set {ENV_TEST_POSTGRES_URL}")
    return name


async def drop_database(name: str) -> None:
    """Drop database `name`, ending any connection still open to it."""
    await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def fresh_database(prefix: str):
    """The URL of a new, empty database, dropped on exit."""
    name = await create_database(prefix)
    try:
        yield database_url(name)
    finally:
        await drop_database(name)
