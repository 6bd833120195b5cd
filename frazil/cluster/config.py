"""What cluster mode demands, checked before a node starts anything.

`check(settings)` refuses a configuration that cannot work (BadSetting, one line naming every
problem; the CLI exits 2 with it). `preflight(settings)` then reaches each service the node
needs and raises ServiceUnreachable naming the one that did not answer, so that an operator
reads "NATS at nats://…:4333 is unreachable", not a traceback from deep inside the start.
"""
from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.engine import make_url

from frazil.errors import reason_of
from frazil.settings import BadSetting, Role, Settings

CONNECT_TIMEOUT_S = 5.0


class ServiceUnreachable(Exception):
    """A service the node needs did not answer at start. `service` names it ("NATS",
    "PostgreSQL"), `where` is its address without credentials."""

    def __init__(self, service: str, where: str, reason: str):
        super().__init__(f"{service} at {where} is unreachable: {reason}")
        self.service = service
        self.where = where


def shown_database_url(url: str | None) -> str | None:
    """The database URL with its password hidden (it goes into error lines and logs)."""
    if url is None:
        return None
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show nothing of it
        return "<not a URL>"


def check(settings: Settings) -> None:
    """Raise BadSetting unless the settings make a node that can run in its mode."""
    problems = []
    nats_env = Settings.env_name("nats_url")
    if settings.clustered:
        url = settings.database_url or ""
        if not url.startswith("postgresql"):
            problems.append((Settings.env_name("database_url"), shown_database_url(settings.database_url),
                             f"cluster mode ({nats_env} is set) needs PostgreSQL, e.g. "
                             "postgresql+asyncpg://user@host/db"))
        if not settings.admin_key:
            problems.append((Settings.env_name("admin_key"), None,
                             f"cluster mode ({nats_env} is set) needs one admin key shared by every node"))
    elif settings.role is not Role.ALL:
        problems.append(("--role", settings.role.value, f"needs cluster mode: set {nats_env}"))
    if problems:
        raise BadSetting(problems)


async def preflight(settings: Settings) -> None:
    """Reach the services this node needs (PostgreSQL when configured, NATS in cluster mode)
    and let them go again; raise ServiceUnreachable for the first that does not answer."""
    if settings.database_url and settings.database_url.startswith("postgresql"):
        await _reach_postgres(settings.database_url)
    if settings.clustered:
        from frazil.cluster.nats import connect

        nc = await connect(settings)
        await nc.close()


async def _reach_postgres(url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, connect_args={"timeout": CONNECT_TIMEOUT_S})
    try:
        async with engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), CONNECT_TIMEOUT_S)
    except Exception as exc:
        raise ServiceUnreachable("PostgreSQL", shown_database_url(url), reason_of(exc)) from None
    finally:
        await engine.dispose()
