"""Makes the "data dir of the release" fixtures next to this file. Kept for the record: it was
run once, on the release's code (commit 5729510; the schema was unchanged at 7cdcb57), before
schema migrations existed, and only reproduces the fixture on such a commit.

    python tests/store/release_fixture/make.py     # with FRAZIL_TEST_POSTGRES_URL or the default

Why text fixtures rather than `git show 5729510:...` in the test: CI's clone may be shallow,
and a copied metadata would only be our reading of what the release made; these files are what
the release's own code wrote (its DDL, from `create_all`, and its rows, through its stores), in
a form a reviewer can read. `release.sqlite.sql` is sqlite3's `iterdump()` of the SQLite file,
`release.postgresql.sql` is `pg_dump --inserts` of the same data on PostgreSQL, and
`expected.json` is what the upgrade test must find afterwards.
"""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from argon2 import PasswordHasher
from sqlalchemy.engine import make_url

from frazil.data.acl import ADMIN, Principal
from frazil.data.service import DataService
from frazil.settings import Settings
from frazil.store.db import open_engine
from frazil.store.functions import FunctionStore
from frazil.store.ids import new_id
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus

HERE = Path(__file__).resolve().parent
PASSWORD = "correct horse battery"
BASE_URL = os.environ.get("FRAZIL_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


async def populate(settings: Settings) -> dict:
    """Functions, versions, invocation records, tables, records, users and a token, written
    through the release's stores; answers what was written."""
    engine = await open_engine(settings)
    functions, invocations = FunctionStore(engine), InvocationStore(engine)
    data = DataService(engine, settings)
    data.accounts.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    common = dict(runtime="python3.11", handler="index.main", memory_mb=128, timeout_s=10.0,
                  resident=0, public=False, bundle_bytes=123)
    for number in (1, 2):
        n = await functions.begin_version("hello", env={"GREETING": f"hi {number}"},
                                          bundle_hash=f"{number:064x}", **common)
        await functions.finish_version("hello", n, ok=True, build_log=f"built {n}\n", layer_key=None)
    n = await functions.begin_version("hello", env={}, bundle_hash="f" * 64, **common)
    await functions.finish_version("hello", n, ok=False, build_log="pip failed\n", error="build failed")
    n = await functions.begin_version("other", env={}, bundle_hash="e" * 64, **{**common, "memory_mb": 256})
    await functions.finish_version("other", n, ok=True, build_log="", layer_key="a" * 64)

    now = time.time()
    records = [
        InvocationRecord(id=new_id(), function="hello", version=2, mode="sync", status=InvocationStatus.SUCCEEDED,
                         created_at=now, attempts=1, cold=True, instance_id="inst1", started_at=now,
                         finished_at=now + 0.01, duration_ms=10.0, result='{"hello": "wörld"}', logs="out\n"),
        InvocationRecord(id=new_id(), function="hello", version=2, mode="sync", status=InvocationStatus.FAILED,
                         created_at=now, attempts=1, cold=False, instance_id="inst1", started_at=now,
                         finished_at=now + 0.02, duration_ms=20.0,
                         error='{"type": "ValueError", "message": "bad", "stack": "..."}', logs="err\n"),
        InvocationRecord(id=new_id(), function="hello", version=2, mode="async", status=InvocationStatus.QUEUED,
                         created_at=now, event='{"n": 1}', next_attempt_at=now + 3600, expires_at=now + 3900),
    ]
    for record in records:
        await invocations.insert(record)

    await data.put_table("notes", {"read": "authenticated", "write": "owner"}, ADMIN)
    alice = await data.accounts.register("alice", PASSWORD)
    await data.accounts.register("bob", PASSWORD)
    inserted = [await data.insert("notes", {"text": text, "n": i, "tags": ["a", "ü"], "nested": {"x": i}},
                                  ADMIN if i == 0 else Principal.user(alice.user_id))
                for i, text in enumerate(["first", "second", "third"])]
    await data.put_table("empty", None, ADMIN)
    await engine.dispose()
    return {
        "functions": {"hello": {"active": 2, "versions": [3, 2, 1]}, "other": {"active": 1, "versions": [1]}},
        "invocations": [{"id": r.id, "function": r.function, "status": r.status.value, "result": r.result,
                         "error": r.error, "logs": r.logs, "event": r.event} for r in records],
        "tables": {"notes": {"read": "authenticated", "write": "owner", "records": inserted}, "empty": {}},
        "users": {"alice": alice.user_id, "bob": None},
        "password": PASSWORD,
    }


async def on_postgres(name: str) -> dict:
    admin = make_url(BASE_URL)
    conn = await asyncpg.connect(host=admin.host, port=admin.port, user=admin.username, database=admin.database)
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = admin.set(database=name).render_as_string(hide_password=False)
        with tempfile.TemporaryDirectory() as tmp:
            expected = await populate(Settings(data_dir=Path(tmp), database_url=url))
        dump = subprocess.run(["pg_dump", "--inserts", "--no-owner", "--no-privileges", "-h", admin.host,
                               "-p", str(admin.port or 5432), "-U", admin.username, name],
                              check=True, capture_output=True, text=True).stdout
        # Without psql's meta-commands (`\\restrict`, from pg_dump 15.14 on): the test runs the
        # file through asyncpg, which speaks SQL only.
        dump = "".join(line for line in dump.splitlines(keepends=True) if not line.startswith("\\"))
        (HERE / "release.postgresql.sql").write_text(dump)
        return expected
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        expected = asyncio.run(populate(settings))
        db = sqlite3.connect(settings.sqlite_path)
        (HERE / "release.sqlite.sql").write_text("\n".join(db.iterdump()) + "\n")
        db.close()
    (HERE / "expected.sqlite.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    expected = asyncio.run(on_postgres(f"frazil_fixture_{os.getpid()}"))
    (HERE / "expected.postgresql.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
