"""SdkHost in-process: db calls of one instance run at most DB_CALLS_IN_FLIGHT at a time."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from frazil.sdk.host import DB_CALLS_IN_FLIGHT, SdkHost
from frazil.settings import Settings
from tests.sdk.test_credential import FakeInstance


class BlockingData:
    """A data service whose inserts wait until released, counting how many run at once."""

    def __init__(self):
        self.running = 0
        self.peak = 0
        self.release = asyncio.Event()

    async def insert(self, table, record, principal, origin=None):
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
            return record
        finally:
            self.running -= 1


async def until(predicate, timeout_s: float = 5.0) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0)
    await asyncio.wait_for(poll(), timeout_s)


async def test_db_calls_of_one_instance_wait_their_turn():
    data = BlockingData()
    host = SdkHost(SimpleNamespace(settings=Settings(), data=data, invoker=SimpleNamespace(inflight={})))
    instance = FakeInstance("tok")
    calls = [asyncio.ensure_future(host.handle(instance, {"op": "db.insert", "sdk_token": "tok", "table": "t",
                                                          "record": {"i": i}}))
             for i in range(3 * DB_CALLS_IN_FLIGHT)]
    await until(lambda: data.running == DB_CALLS_IN_FLIGHT)
    for _ in range(10):  # let anything that could slip past the limit run
        await asyncio.sleep(0)
    assert data.running == DB_CALLS_IN_FLIGHT
    # Another instance is not held up by the first one's queue.
    other = asyncio.ensure_future(host.handle(FakeInstance("tok2"), {"op": "db.insert", "sdk_token": "tok2",
                                                                     "table": "t", "record": {"other": True}}))
    await until(lambda: data.running == DB_CALLS_IN_FLIGHT + 1)
    data.release.set()
    replies = await asyncio.gather(*calls, other)
    assert [r["value"] for r in replies[:-1]] == [{"i": i} for i in range(3 * DB_CALLS_IN_FLIGHT)]
    assert data.peak == DB_CALLS_IN_FLIGHT + 1
