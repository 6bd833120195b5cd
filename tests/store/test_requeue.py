"""Re-queueing the async invocations that were running when the embedded platform stopped
(InvocationStore.requeue_orphans), on both backends."""
from __future__ import annotations

import time

from frazil.settings import Settings
from frazil.store.db import open_engine
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus


def running(n: int, owner: str | None, mode: str = "async") -> InvocationRecord:
    return InvocationRecord(id=f"{n:028x}", function="fn", version=1, mode=mode, status=InvocationStatus.RUNNING,
                            created_at=time.time(), attempts=1, owner=owner)


async def test_every_running_async_invocation_is_requeued(database_url_factory, tmp_path):
    engine = await open_engine(Settings(data_dir=tmp_path / "data", database_url=await database_url_factory()))
    try:
        store = InvocationStore(engine)
        for record in (running(1, "node-a"), running(2, None), running(3, "node-a", mode="sync")):
            await store.insert(record)
        assert await store.requeue_orphans() == 2
        statuses = {n: (await store.get(f"{n:028x}")) for n in range(1, 4)}
        assert {n for n, r in statuses.items() if r.status is InvocationStatus.QUEUED} == {1, 2}
        assert statuses[1].owner is None
        assert statuses[3].status is InvocationStatus.RUNNING  # sync: its caller is gone with the process
    finally:
        await engine.dispose()
