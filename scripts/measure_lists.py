"""Times listing a page of one function's invocation records among many, at a given schema
revision: the check behind migration 0002 (run it at 0001 to see the old index's cost).

    .venv/bin/python scripts/measure_lists.py [--records 90000] [--revision head|0001] [--database-url URL]

Without --database-url it uses a SQLite file in a temporary directory. With a PostgreSQL URL the
database must be empty (it is filled, not cleaned up).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from alembic import command

from frazil.settings import Settings
from frazil.store import migrate
from frazil.store.db import make_engine
from frazil.store.ids import new_id
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus


async def measure(settings: Settings, records: int, revision: str, runs: int) -> None:
    engine = make_engine(settings)
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(migrate.alembic_config(c), revision))
    store = InvocationStore(engine)
    now = time.time()
    batch = []
    for n in range(records):
        # One other function's record for every ten, interleaved like real traffic.
        function = "other" if n % 10 == 9 else "busy"
        batch.append(InvocationRecord(id=new_id(), function=function, version=1, mode="sync",
                                      status=InvocationStatus.SUCCEEDED, created_at=now, attempts=1,
                                      result='{"ok": true}', logs="line\n"))
        if len(batch) == 5000:
            await store.insert_many(batch)
            batch = []
    await store.insert_many(batch)
    busy = records - records // 10
    middle = (await store.list_for_function("busy", limit=busy // 2))[-1].id
    for what, before in (("newest 50", None), ("50 after a cursor half-way", middle)):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            page = await store.list_for_function("busy", limit=50, before=before)
            times.append((time.perf_counter() - start) * 1000)
        assert len(page) == 50
        print(f"{engine.dialect.name} revision {revision}: {what} of {busy} records of one function "
              f"({records} in all): median {statistics.median(times):.2f} ms, "
              f"min {min(times):.2f} ms over {runs} runs")
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--revision", default="head")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=args.database_url)
        asyncio.run(measure(settings, args.records, args.revision, args.runs))


if __name__ == "__main__":
    main()
