"""Migration 0004 on real SQLite and PostgreSQL databases: a version deployed with the older
`public = true` is `access = "public"` after the upgrade, the others `admin`; records made
before triggers were recorded read as trigger `api`, depth 0."""
from __future__ import annotations

import time

from alembic import command
from sqlalchemy import text

from frazil.store import migrate
from frazil.store.db import make_engine
from frazil.store.functions import FunctionStore
from frazil.store.invocations import InvocationStore
from frazil.store.models import Access, Trigger
from tests.store.test_migrations import settings_for


async def test_public_versions_become_access_public(database_url_factory, tmp_path):
    """Rows written at revision 0003 keep their meaning at the head."""
    engine = make_engine(settings_for(await database_url_factory(), tmp_path))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(migrate.alembic_config(c), "0003"))
            now = time.time()
            await conn.execute(text(
                "INSERT INTO functions (name, active_version, last_version, created_at, updated_at) "
                "VALUES ('fn', 2, 2, :now, :now)"), {"now": now})
            for number, public in ((1, True), (2, False)):
                await conn.execute(text(
                    "INSERT INTO versions (function, number, status, runtime, handler, memory_mb, timeout_s, env, "
                    "resident, public, bundle_hash, bundle_bytes, build_log, created_at) VALUES ('fn', :n, 'ready', "
                    "'python3.11', 'index.main', 128, 10, '{}', 0, :public, :hash, 1, '', :now)"),
                    {"n": number, "public": public, "hash": "0" * 64, "now": now})
            await conn.execute(text(
                "INSERT INTO invocations (id, function, version, mode, status, attempts, created_at) "
                "VALUES ('old', 'fn', 1, 'sync', 'succeeded', 1, :now)"), {"now": now})
        await migrate.upgrade(engine)
        functions = FunctionStore(engine)
        assert (await functions.version("fn", 1)).access is Access.PUBLIC
        assert (await functions.version("fn", 2)).access is Access.ADMIN
        assert (await functions.version("fn", 2)).http is False
        old = await InvocationStore(engine).get("old")
        assert (old.trigger, old.depth, old.node, old.retry_of) == (Trigger.API, 0, None, None)
    finally:
        await engine.dispose()
