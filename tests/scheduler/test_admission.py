"""Tier admission (SPEC "Scheduling"): never more running than the tier's limit, a freed slot
goes to the oldest waiter, and a sync call that finds no slot within its window gets 429."""
from __future__ import annotations

import asyncio

import pytest

from frazil.scheduler.admission import TierSlots
from tests.inproc.harness import eventually


class TestTierSlots:
    """The slot counter alone."""

    async def test_never_more_than_the_limit(self):
        """Takers beyond the limit wait; each give() lets exactly one more in."""
        slots = TierSlots(2)
        assert slots.try_take() and slots.try_take()
        assert not slots.try_take()
        waiters = [asyncio.create_task(slots.take(5)) for _ in range(3)]
        await eventually(lambda: slots.waiting == 3)
        assert slots.running == 2
        slots.give()
        done, _ = await asyncio.wait(waiters, timeout=1, return_when=asyncio.FIRST_COMPLETED)
        assert done == {waiters[0]} and waiters[0].result() is True
        assert slots.running == 2 and slots.waiting == 2
        for _ in range(2):  # to the two other waiters: the count stays at the limit
            slots.give()
        assert await asyncio.gather(*waiters) == [True, True, True]
        assert slots.running == 2 and slots.waiting == 0
        slots.give()
        slots.give()
        assert slots.running == 0

    async def test_a_freed_slot_goes_to_the_oldest_waiter(self):
        """Waiters are served first come, first served, and a newcomer cannot jump the queue."""
        slots = TierSlots(1)
        assert slots.try_take()
        order = []

        async def wait(name):
            assert await slots.take(5)
            order.append(name)

        tasks = []
        for name in ("first", "second", "third"):
            tasks.append(asyncio.create_task(wait(name)))
            await eventually(lambda n=len(tasks): slots.waiting == n)
        assert not slots.try_take()  # a slot is not free while anyone waits
        for _ in range(3):
            slots.give()
            await eventually(lambda n=len(order) + 1: len(order) == n)
        assert order == ["first", "second", "third"]
        slots.give()
        assert slots.running == 0

    async def test_a_waiter_that_times_out_takes_nothing(self):
        """take() returns False after its window; the count is unchanged and the next give frees the slot."""
        slots = TierSlots(1)
        freed = []
        slots.on_free = lambda: freed.append(True)
        assert slots.try_take()
        assert await slots.take(0.01) is False
        assert slots.running == 1 and slots.waiting == 0
        slots.give()
        assert slots.running == 0 and freed == [True]


class TestSyncAdmission:
    """Through HTTP, counted by the runtimes themselves (the fake sandbox)."""

    async def test_concurrent_calls_never_exceed_the_tier_limit(self, frazil_factory):
        """Six calls on a tier of two: two run, four wait, and all succeed in the end."""
        frazil = await frazil_factory(sync_retry_s=5.0, tier_limit_128=2, tier_limit_256=1)
        await frazil.deploy("gated")
        slots = frazil.platform.admission.slots(128)
        calls = [asyncio.create_task(frazil.invoke("gated", {"gate": "g", "return": n})) for n in range(6)]
        gate = frazil.sandbox.gate("g")
        await gate.arrivals(2)
        await eventually(lambda: slots.waiting == 4, what="four calls waiting for a slot")
        assert frazil.sandbox.running == 2 and slots.running == 2
        gate.open()
        bodies = await asyncio.gather(*calls)
        assert sorted(b["result"] for b in bodies) == list(range(6))
        assert frazil.sandbox.peak_running == 2
        assert slots.running == 0

    async def test_a_freed_slot_goes_to_the_oldest_waiting_call(self, frazil_factory):
        """With the tier full, waiting calls run in the order they arrived."""
        frazil = await frazil_factory(sync_retry_s=5.0, tier_limit_128=1, tier_limit_256=1)
        await frazil.deploy("one")
        slots = frazil.platform.admission.slots(128)
        holder = asyncio.create_task(frazil.invoke("one", {"gate": "hold"}))
        await frazil.sandbox.gate("hold").arrivals(1)
        waiting = []
        for name in ("b", "c", "d"):
            waiting.append(asyncio.create_task(frazil.invoke("one", {"return": name})))
            await eventually(lambda n=len(waiting): slots.waiting == n)
        frazil.sandbox.gate("hold").open()
        await holder
        ids = [(await task)["invocation_id"] for task in waiting]
        assert [seen.invocation_id for seen in frazil.sandbox.invocations[1:]] == ids

    async def test_429_after_the_sync_window(self, frazil):
        """A call that finds the tier full for the whole window gets 429 TooManyRequests."""
        await frazil.deploy("big", memory=256)  # the default harness allows one 256 MB invocation
        holder = asyncio.create_task(frazil.invoke("big", {"gate": "hold"}))
        await frazil.sandbox.gate("hold").arrivals(1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await frazil.fast.post("/v1/functions/big/invoke", content=b"{}")
        waited = loop.time() - started
        assert response.status_code == 429, response.text
        body = response.json()
        assert body["success"] is False and body["error"]["type"] == "TooManyRequests"
        assert "256 MB tier" in body["message"]
        assert waited >= frazil.platform.settings.sync_retry_s
        assert len(frazil.sandbox.invocations) == 1  # the refused call never reached a runtime
        frazil.sandbox.gate("hold").open()
        assert (await holder)["success"] is True
        metrics = (await frazil.fast.get("/metrics")).text
        assert 'frazil_throttled_sync_total{function="big"} 1.0' in metrics

    @pytest.mark.parametrize("memory", [128, 256])
    async def test_tiers_are_counted_apart(self, frazil, memory):
        """A full 256 MB tier does not hold back 128 MB calls, nor the reverse."""
        other = 256 if memory == 128 else 128
        await frazil.deploy("full", memory=memory)
        await frazil.deploy("free", memory=other)
        limit = frazil.platform.settings.tiers[memory].concurrency
        holders = [asyncio.create_task(frazil.invoke("full", {"gate": "hold"})) for _ in range(limit)]
        await frazil.sandbox.gate("hold").arrivals(limit)
        assert (await frazil.invoke("free", {"return": 1}))["result"] == 1
        frazil.sandbox.gate("hold").open()
        await asyncio.gather(*holders)
