"""Schema migrations on real SQLite and PostgreSQL databases: an empty database, a data dir
made by the release before migrations (tests/store/release_fixture), and concurrent starts."""
from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

import frazil.data.schema  # noqa: F401  (the BaaS tables on `metadata`)
from frazil.data.acl import ADMIN, Principal
from frazil.data.schema import data_tokens
from frazil.data.service import DataService
from frazil.settings import Settings
from frazil.store import migrate
from frazil.store.db import make_engine, open_engine
from frazil.store.functions import FunctionStore
from frazil.store.invocations import InvocationStore
from frazil.store.models import Access
from frazil.store.schema import metadata

FIXTURE = Path(__file__).resolve().parent / "release_fixture"


def settings_for(url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=url)


async def revision(engine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(migrate.current_revision)


async def schema_differences(engine) -> list:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))


async def load_release_fixture(url: str, backend: str) -> dict:
    """Fill the empty database at `url` with what the release wrote; answer what it wrote."""
    if backend == "sqlite":
        db = sqlite3.connect(make_url(url).database)
        db.executescript((FIXTURE / "release.sqlite.sql").read_text())
        db.close()
    else:
        u = make_url(url)
        conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username, database=u.database)
        try:
            await conn.execute((FIXTURE / "release.postgresql.sql").read_text())
        finally:
            await conn.close()
    return json.loads((FIXTURE / f"expected.{backend}.json").read_text())


async def test_engines_on_a_new_data_dir_migrate_once(tmp_path):
    """The default SQLite file (made empty in the data dir before SQLite opens it) upgraded by
    several engines at once: all succeed, one stamp. Fails when each connection switches the
    file to WAL as it opens (most rounds: "database is locked", or two upgrades at once)."""
    for n in range(20):
        assert await upgrade_together(Settings(data_dir=tmp_path / f"data-{n}")) == (migrate.head_revision(), 1)


async def upgrade_together(settings: Settings, engines: int = 3) -> tuple[str | None, int]:
    """Upgrade one database through `engines` engines at once: its revision and version stamps."""
    made = [make_engine(settings) for _ in range(engines)]
    try:
        await asyncio.gather(*(migrate.upgrade(e) for e in made))
        async with made[0].connect() as conn:
            stamps = (await conn.execute(text(f"SELECT count(*) FROM {migrate.VERSION_TABLE}"))).scalar_one()
        return await revision(made[0]), stamps
    finally:
        for e in made:
            await e.dispose()


class TestMigrations:
    async def test_empty_database_gets_the_whole_schema(self, database_url_factory, tmp_path):
        """An empty database is migrated to the head revision, and the result is exactly the metadata."""
        engine = await open_engine(settings_for(await database_url_factory(), tmp_path))
        try:
            assert await revision(engine) == migrate.head_revision()
            assert await schema_differences(engine) == []
        finally:
            await engine.dispose()

    async def test_release_data_dir_is_stamped_upgraded_and_intact(self, backend, database_url_factory, tmp_path):
        """A database made by the release before migrations is recognised as the base revision,
        upgraded to the head, and its functions, versions, invocations, tables, records and
        users are all still there and usable."""
        url = await database_url_factory()
        expected = await load_release_fixture(url, backend)
        settings = settings_for(url, tmp_path)
        engine = await open_engine(settings)
        try:
            assert await revision(engine) == migrate.head_revision()
            assert await schema_differences(engine) == []

            functions = FunctionStore(engine)
            active = {v.function: v.number for v in await functions.list_active()}
            assert active == {name: f["active"] for name, f in expected["functions"].items()}
            for name, f in expected["functions"].items():
                assert [v.number for v in await functions.versions_of(name)] == f["versions"]
            assert (await functions.active("hello")).env == {"GREETING": "hi 2"}
            assert await functions.build_log("hello", 3) == "pip failed\n"

            invocations = InvocationStore(engine)
            for want in expected["invocations"]:
                got = await invocations.get(want["id"])
                assert {k: getattr(got, k) if k != "status" else got.status.value for k in want} == want
            assert [r.id for r in await invocations.due(now=2e9, limit=10)] == [expected["invocations"][2]["id"]]

            data = DataService(engine, settings)
            data.accounts.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
            assert {t.name: t.records for t in await data.list_tables(ADMIN)} == {"empty": 0, "notes": 3}
            notes = expected["tables"]["notes"]
            assert (await data.get_table("notes", ADMIN)).acl.view() == {"read": notes["read"],
                                                                         "write": notes["write"]}
            assert await data.find("notes", None, ADMIN) == notes["records"]
            assert await data.find("notes", {"nested.x": {"gte": 1}}, ADMIN) == notes["records"][1:]
            session = await data.accounts.login("alice", expected["password"])
            assert session.user_id == expected["users"]["alice"]
            alice = await data.accounts.authenticate(session.token)
            assert [r["text"] for r in await data.find("notes", None, alice)] == ["first", "second", "third"]
            await data.accounts.login("bob", expected["password"])
            async with engine.connect() as conn:
                assert (await conn.execute(select(func.count()).select_from(data_tokens))).scalar_one() == 4

            # And the store goes on working: a new version gets the next number, a new record fits.
            number = await functions.begin_version(
                "hello", runtime="python3.11", handler="index.main", memory_mb=128, timeout_s=10.0, env={},
                resident=0, access=Access.ADMIN, http=False, bundle_hash="0" * 64, bundle_bytes=1)
            assert number == 4
            await data.insert("notes", {"text": "fourth"}, Principal.user(session.user_id))
            assert (await data.get_table("notes", ADMIN)).records == 4
        finally:
            await engine.dispose()

    async def test_upgrading_again_changes_nothing(self, database_url_factory, tmp_path):
        """A second start on a migrated database runs no migration and keeps the rows."""
        settings = settings_for(await database_url_factory(), tmp_path)
        engine = await open_engine(settings)
        await DataService(engine, settings).put_table("kept", None, ADMIN)
        await engine.dispose()
        engine = await open_engine(settings)
        try:
            assert await revision(engine) == migrate.head_revision()
            assert [t.name for t in await DataService(engine, settings).list_tables(ADMIN)] == ["kept"]
        finally:
            await engine.dispose()

    async def test_nodes_starting_together_migrate_once(self, database_url_factory, tmp_path):
        """Several engines upgrading one empty database at once all succeed (the lock queues them)."""
        settings = settings_for(await database_url_factory(), tmp_path)
        assert await upgrade_together(settings) == (migrate.head_revision(), 1)
