"""Claims of async invocations are leases (InvocationStore.claim/settle/take_back_expired), on
both backends: a claim counts the attempt, only the current claim's owner and attempt may
settle it, and a lapsed lease comes back to the queue whoever held it."""
from __future__ import annotations

import dataclasses
import time

from frazil.settings import Settings
from frazil.store.db import open_engine
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus as S


def queued(n: int) -> InvocationRecord:
    return InvocationRecord(id=f"{n:028x}", function="fn", version=1, mode="async", status=S.QUEUED,
                            created_at=time.time())


async def test_a_lapsed_claim_comes_back_and_its_late_outcome_is_refused(database_url_factory, tmp_path):
    engine = await open_engine(Settings(data_dir=tmp_path / "data", database_url=await database_url_factory()))
    try:
        store = InvocationStore(engine)
        first, lasting = queued(1), queued(2)
        await store.insert(first)
        await store.insert(lasting)
        now = time.time()
        assert await store.claim(first, "node-a", now, lease_until=now - 1)  # already lapsed
        assert not await store.claim(first, "node-b", now, lease_until=now + 60)  # taken: no second claim
        assert await store.claim(lasting, "node-a", now, lease_until=now + 60)
        assert (await store.get(first.id)).attempts == 1  # the claim counts the start
        assert await store.next_due_time() == now - 1  # the lapse is when a dispatcher is needed

        assert await store.take_back_expired(time.time()) == 1
        back = await store.get(first.id)
        assert back.status is S.QUEUED and back.owner is None and back.lease_until is None and back.attempts == 1
        assert (await store.get(lasting.id)).status is S.RUNNING  # its lease lasts: left alone

        assert await store.claim(back, "node-b", time.time(), lease_until=time.time() + 60)
        stale = dataclasses.replace(first, status=S.SUCCEEDED, attempts=1, result='"late"', finished_at=time.time())
        assert not await store.settle(stale, "node-a", attempt=1)  # node-a's claim was taken back
        assert not await store.settle(dataclasses.replace(stale, attempts=2), "node-a", attempt=2)  # not its claim
        current = dataclasses.replace(stale, attempts=2, owner="node-b", result='"mine"')
        assert await store.settle(current, "node-b", attempt=2)
        final = await store.get(first.id)
        assert final.status is S.SUCCEEDED and final.result == '"mine"' and final.attempts == 2
        assert final.lease_until is None
        assert await store.count_unsettled() == 1  # `lasting`, still running under its lease
    finally:
        await engine.dispose()
