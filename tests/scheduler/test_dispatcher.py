"""The async queue (SPEC "Scheduling"), run in burst mode with `Dispatcher.drain()`: retries
with backoff, throttling after the retry window, and the tier limit for queued work."""
from __future__ import annotations

import asyncio

import pytest

from frazil.store.models import InvocationStatus as S
from tests.inproc.harness import eventually

SMALL_TIERS = dict(tier_limit_128=2, tier_limit_256=1)


async def queue(frazil, name: str, event=None) -> str:
    return (await frazil.invoke(name, event, mode="async", expect=202))["invocation_id"]


class TestDrain:
    """Burst mode: run the queue until empty, then report."""

    async def test_overflow_runs_within_the_tier_limit(self, frazil_factory):
        """Eight queued on a tier of two: two run at a time and all eight succeed."""
        frazil = await frazil_factory(**SMALL_TIERS)
        await frazil.deploy("batch")
        ids = [await queue(frazil, "batch", {"gate": "g", "return": n}) for n in range(8)]
        drain = asyncio.create_task(frazil.dispatcher.drain(5))
        gate = frazil.sandbox.gate("g")
        await gate.arrivals(2)
        assert frazil.sandbox.running == 2 and frazil.dispatcher.running == 2
        gate.open()
        stats = await drain
        assert stats.finished == {S.SUCCEEDED: 8} and stats.retried == 0
        assert frazil.sandbox.peak_running == 2
        assert [(await frazil.record(i))["result"] for i in ids] == list(range(8))

    async def test_empty_queue_returns_at_once(self, frazil):
        """Nothing queued: drain returns nothing done."""
        stats = await frazil.dispatcher.drain(1)
        assert stats.finished == {} and stats.retried == 0

    async def test_times_out_while_work_is_running(self, frazil):
        """A drain that cannot empty the queue in time raises; a later one finishes the job."""
        await frazil.deploy("slow")
        invocation = await queue(frazil, "slow", {"gate": "g"})
        with pytest.raises(TimeoutError):
            await frazil.dispatcher.drain(0.05)
        frazil.sandbox.gate("g").open()
        stats = await frazil.dispatcher.drain(5)
        assert stats.finished == {S.SUCCEEDED: 1}
        assert (await frazil.record(invocation))["attempts"] == 1  # started once, not again by the second drain

    async def test_woken_by_a_freed_slot_not_by_the_clock(self, frazil_factory):
        """A queued invocation waiting for a slot runs as soon as a sync call frees it,
        long before its retry window (60 s) would have ended the wait."""
        frazil = await frazil_factory(async_retry_s=60.0, sync_retry_s=5.0)
        await frazil.deploy("big", memory=256)  # a tier of one
        holder = asyncio.create_task(frazil.invoke("big", {"gate": "hold"}))
        await frazil.sandbox.gate("hold").arrivals(1)
        invocation = await queue(frazil, "big", {"return": "queued"})
        drain = asyncio.create_task(frazil.dispatcher.drain(5))
        await eventually(lambda: frazil.dispatcher._waiting_for_slot, what="the pass to find the tier full")
        frazil.sandbox.gate("hold").open()
        stats = await drain
        assert stats.finished == {S.SUCCEEDED: 1}
        assert (await frazil.record(invocation))["result"] == "queued"
        await holder

    async def test_the_background_loop_runs_the_queue_by_itself(self, frazil_factory):
        """As the server runs it: no drain, the dispatcher's loop picks queued work up."""
        frazil = await frazil_factory(dispatch_loop=True)
        await frazil.deploy("auto")
        invocation = await queue(frazil, "auto", {"return": "done"})
        await eventually(lambda: frazil.dispatcher.stats.finished[S.SUCCEEDED] == 1, what="the loop to run it")
        assert (await frazil.record(invocation))["result"] == "done"


class TestRetries:
    """A failed async invocation is retried `async_max_retries` times with exponential backoff."""

    async def test_fails_twice_then_succeeds(self, frazil_factory):
        """Two failures, two retries after growing pauses, then success on the third attempt."""
        frazil = await frazil_factory(async_max_retries=2, async_retry_backoff_s=0.05)
        await frazil.deploy("flaky")
        invocation = await queue(frazil, "flaky", {"fail_first": 2, "return": "ok"})
        stats = await frazil.dispatcher.drain(5)
        assert stats.finished == {S.SUCCEEDED: 1} and stats.retried == 2
        record = await frazil.record(invocation)
        assert record["status"] == "succeeded" and record["attempts"] == 3 and record["result"] == "ok"
        times = [seen.at for seen in frazil.sandbox.invocations]
        assert len(times) == 3
        assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1  # backoff(1), backoff(2)

    async def test_always_failing_ends_failed_after_the_retries(self, frazil_factory):
        """1 + async_max_retries attempts, then the record is failed with the function's error."""
        frazil = await frazil_factory(async_max_retries=3)
        await frazil.deploy("broken")
        invocation = await queue(frazil, "broken", {"raise": "no luck"})
        stats = await frazil.dispatcher.drain(5)
        assert stats.finished == {S.FAILED: 1} and stats.retried == 3
        record = await frazil.record(invocation)
        assert record["status"] == "failed" and record["attempts"] == 4
        assert record["error"]["type"] == "ValueError" and record["error"]["message"] == "no luck"
        assert frazil.sandbox.attempts[invocation] == 4

    async def test_no_retries_when_configured_so(self, frazil_factory):
        """async_max_retries=0: one attempt only."""
        frazil = await frazil_factory(async_max_retries=0)
        await frazil.deploy("once")
        invocation = await queue(frazil, "once", {"raise": "x"})
        assert (await frazil.dispatcher.drain(5)).finished == {S.FAILED: 1}
        assert frazil.sandbox.attempts[invocation] == 1

    def test_backoff_doubles_and_is_capped(self, frazil_factory):
        """backoff(n) = base * 2^(n-1), at most 60 s."""
        from frazil.scheduler.dispatcher import Dispatcher

        dispatcher = Dispatcher.__new__(Dispatcher)
        dispatcher.settings = type("S", (), {"async_retry_backoff_s": 1.5})()
        assert [dispatcher.backoff(n) for n in (1, 2, 3, 4)] == [1.5, 3.0, 6.0, 12.0]
        assert dispatcher.backoff(10) == 60.0


class TestThrottling:
    """An async invocation that finds its tier full for its whole retry window is `throttled`."""

    async def test_throttled_after_the_window(self, frazil_factory):
        """The tier stays full past async_retry_s: the record ends throttled, never having run."""
        frazil = await frazil_factory(async_retry_s=0.2, sync_retry_s=5.0)
        await frazil.deploy("big", memory=256)
        holder = asyncio.create_task(frazil.invoke("big", {"gate": "hold"}))
        await frazil.sandbox.gate("hold").arrivals(1)
        invocation = await queue(frazil, "big", {"return": "never"})
        stats = await frazil.dispatcher.drain(5)
        assert stats.finished == {S.THROTTLED: 1}
        record = await frazil.record(invocation)
        assert record["status"] == "throttled" and record["attempts"] == 0
        assert record["error"]["type"] == "TooManyRequests"
        assert frazil.sandbox.attempts[invocation] == 0
        frazil.sandbox.gate("hold").open()
        await holder

