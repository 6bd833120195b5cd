"""Async claims are leases the dispatcher itself revisits (issue 11): a claim whose lease
lapsed - another node's or its own - is taken back by a pass, without a restart, and a
stale worker's late outcome is refused."""
from __future__ import annotations

import asyncio
import time

from frazil.store.models import InvocationStatus as S


async def queue(frazil, name: str, event=None) -> str:
    return (await frazil.invoke(name, event, mode="async", expect=202))["invocation_id"]


class TestLeases:
    """Nothing accepted stays running: lapsed claims come back, stale outcomes are dropped."""

    async def test_a_lapsed_claim_of_another_node_is_taken_back_without_a_restart(self, frazil):
        """A row left running by a node that claimed it and vanished: once its lease lapses,
        the next drain takes it back and runs it; both starts are counted."""
        await frazil.deploy("orphan")
        invocation = await queue(frazil, "orphan", {"return": "done"})
        store = frazil.platform.invocations
        now = time.time()
        assert await store.claim(await store.get(invocation), "gone-node", now, lease_until=now + 0.05)
        stats = await frazil.dispatcher.drain(5)  # waits for the lapse (next_due_time), then a pass
        assert stats.finished == {S.SUCCEEDED: 1}
        record = await frazil.record(invocation)
        assert record["status"] == "succeeded" and record["result"] == "done" and record["attempts"] == 2
        assert frazil.sandbox.attempts[invocation] == 1  # the gone node never ran it here

    async def test_a_stale_workers_late_outcome_is_refused(self, frazil, monkeypatch):
        """Our own worker outlives its (tiny) lease: a pass takes the row back; the worker's
        late outcome is refused, and the new claim runs it and settles it."""
        await frazil.deploy("slow")
        invocation = await queue(frazil, "slow", {"gate": "g", "return": "late"})
        monkeypatch.setattr(frazil.dispatcher, "lease_s", lambda version: 0.05)
        store = frazil.platform.invocations
        claim = store.claim

        async def slow_claim(*args):  # lands after the pass has read the leases (as under load)
            await asyncio.sleep(0.05)
            return await claim(*args)
        monkeypatch.setattr(store, "claim", slow_claim)
        drain = asyncio.create_task(frazil.dispatcher.drain(10))
        await frazil.sandbox.gate("g").arrivals(1)
        deadline = time.monotonic() + 5
        while (await store.get(invocation)).status is not S.QUEUED:  # taken back by a pass
            assert time.monotonic() < deadline, "the lapsed lease was not taken back"
            await asyncio.sleep(0.01)
            # The drain's own pass may have looked before the slow claim landed (it then waits
            # REVISIT_S): a pass of ours finds the lapse once it is there.
            await frazil.dispatcher.dispatch_once()
        monkeypatch.undo()  # the next claim keeps its lease
        assert frazil.dispatcher.running == 1  # the first worker still holds the gate
        frazil.sandbox.gate("g").open()
        stats = await drain
        assert stats.stale == 1 and stats.finished == {S.SUCCEEDED: 1}
        record = await frazil.record(invocation)
        assert record["status"] == "succeeded" and record["attempts"] == 2
        assert frazil.sandbox.attempts[invocation] == 2
