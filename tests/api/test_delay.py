"""Delayed invocations (`?mode=async&delay_s=N`), in-process: the record waits, queued with
`not_before`, and the dispatcher runs it no earlier; bad delays are 400 on both paths."""
from __future__ import annotations

from datetime import datetime

import pytest


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class TestDelayed:
    async def test_runs_no_earlier_than_the_delay(self, frazil):
        """The record is queued with not_before and trigger `delay`; it runs after that time."""
        await frazil.deploy("fn")
        response = await frazil.fast.post("/v1/functions/fn/invoke?mode=async&delay_s=0.3", content=b'{"return": 7}')
        assert response.status_code == 202, response.text
        accepted = response.json()
        queued = await frazil.record(accepted["invocation_id"])
        assert (queued["status"], queued["trigger"]) == ("queued", "delay")
        assert queued["not_before"] == accepted["not_before"]
        assert 0.29 <= ts(queued["not_before"]) - ts(queued["created_at"]) <= 0.31
        # Nothing is due yet: a pass now starts nothing.
        await frazil.dispatcher.dispatch_once()
        assert (await frazil.record(accepted["invocation_id"]))["status"] == "queued"
        stats = await frazil.dispatcher.drain()  # waits for the due time, then runs it
        assert stats.finished
        done = await frazil.record(accepted["invocation_id"])
        assert done["status"] == "succeeded" and done["result"] == 7
        assert ts(done["started_at"]) >= ts(queued["not_before"])


@pytest.mark.parametrize("query, words", [
    ("mode=async&delay_s=0", "more than 0"),
    ("mode=async&delay_s=-5", "more than 0"),
    ("mode=async&delay_s=2592001", "at most 2592000"),
    ("mode=async&delay_s=nan", "more than 0"),
    ("mode=async&delay_s=soon", "number of seconds"),
    ("mode=async&delay_s=", "number of seconds"),
    ("delay_s=10", "mode=async"),
])
async def test_bad_delay_is_400_naming_it_and_queues_nothing(frazil, query, words):
    """A delay out of range, not a number, or on a sync call is a 400 naming delay_s, on the
    fast path and the documented route alike, and nothing is queued."""
    await frazil.deploy("fn")
    for client in (frazil.fast, frazil.documented):
        response = await client.post(f"/v1/functions/fn/invoke?{query}", content=b"{}")
        assert response.status_code == 400, response.text
        assert "delay_s" in response.json()["message"] and words in response.json()["message"]
    assert await frazil.platform.invocations.count_queued() == 0
    assert frazil.sandbox.invocations == []
