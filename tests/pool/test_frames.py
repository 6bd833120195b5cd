"""The frame rules: the platform trusts nothing an instance writes on its channel.

A "function" here is the fake sandbox's scripted runtime (tests/inproc/fake_sandbox.py), which
can write any frame a function writing to the channel itself could: oversized, forged, of an
unknown kind, at the wrong moment, or thousands of SDK calls at once. Each case checks what
the invocation answers, that the instance is destroyed, and that the next call runs cold on
a fresh instance and gets its own answer.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from frazil.pool import sdk_calls
from frazil.pool.pool import InstancePool
from frazil.runtimes import protocol
from frazil.settings import Settings
from tests.inproc.fake_sandbox import FakeSandbox
from tests.inproc.harness import eventually, make_version
from tests.pool.conftest import _code_dir, _no_layers

MIB = 1024 * 1024


async def broken_then_fresh(frazil, name: str, script: dict, error_type: str = "ProtocolViolation") -> dict:
    """Invoke `script`, expect it to fail with `error_type` and its instance to be destroyed;
    then the next call is cold on a new instance and answers its own event. Returns the error."""
    body = await frazil.invoke(name, script)
    assert body["success"] is False, body
    assert body["error"]["type"] == error_type, body["error"]
    first = frazil.sandbox.created[-1].instance_id
    await eventually(lambda: first in frazil.sandbox.destroyed, what="the instance to be destroyed")
    after = await frazil.invoke(name, {"return": "mine"})
    assert after["success"] is True and after["result"] == "mine" and after["cold"] is True, after
    assert frazil.sandbox.created[-1].instance_id != first
    frazil.pool.check()
    return body["error"]


class TestOversizedFrames:
    """A frame larger than its kind may be is refused from its first bytes."""

    async def test_a_result_announced_at_66_mb(self, frazil):
        """A header announcing 66 MB for a result: ResultTooLarge, judged before any body came."""
        await frazil.deploy("big")
        error = await broken_then_fresh(frazil, "big", {"hang": True, "send": [
            {"announce": 66 * MIB, "raw": '{"type":"result","id":"$id","ok":true,"result":"'}]}, "ResultTooLarge")
        assert str(66 * MIB) in error["message"] and str(6 * MIB) in error["message"]

    async def test_a_result_sent_at_7_mb(self, frazil):
        """A 7 MB result, actually sent: ResultTooLarge (the runtime's own check is not relied on)."""
        await frazil.deploy("big")
        await broken_then_fresh(frazil, "big", {"pad": 7_000_000}, "ResultTooLarge")

    async def test_the_limit_is_the_setting_plus_the_envelope(self, frazil_factory):
        """A result of max_payload_bytes passes; one beyond it and the envelope slack does not."""
        frazil = await frazil_factory(max_payload_bytes=100_000)
        await frazil.deploy("edge")
        body = await frazil.invoke("edge", {"pad": 100_000 - 2})  # JSON quotes included
        assert body["success"] is True and len(body["result"]) == 100_000 - 2
        await broken_then_fresh(frazil, "edge", {"pad": 100_000 + protocol.RESULT_ENVELOPE_BYTES},
                                "ResultTooLarge")

    async def test_an_sdk_call_announced_too_large(self, frazil):
        """An sdk_call over MAX_SDK_CALL_BYTES: ProtocolViolation naming the kind and the limit."""
        await frazil.deploy("bigcall")
        error = await broken_then_fresh(frazil, "bigcall", {"hang": True, "send": [
            {"announce": protocol.MAX_SDK_CALL_BYTES + 1, "raw": '{"type":"sdk_call","call":1,'}]})
        assert "'sdk_call' frame" in error["message"] and str(protocol.MAX_SDK_CALL_BYTES) in error["message"]

    async def test_a_header_larger_than_any_frame(self, frazil):
        """A length prefix alone, beyond every kind's limit, is judged without waiting for more."""
        await frazil.deploy("huge")
        error = await broken_then_fresh(frazil, "huge", {"hang": True, "send": [{"announce": 2 ** 32 - 1,
                                                                                  "raw": ""}]})
        assert str(2 ** 32 - 1) in error["message"]


class TestUnexpectedFrames:
    """A frame the protocol does not expect at that moment destroys the instance."""

    async def test_a_result_for_another_invocation(self, frazil):
        """A forged early result with a wrong id fails this invocation, naming the id; the real
        result, late, can never become the next caller's answer: the next call is cold."""
        await frazil.deploy("forger")
        script = {"send": [{"type": "result", "id": "forged-id", "ok": True, "result": "forged"}], "return": "real"}
        error = await broken_then_fresh(frazil, "forger", script)
        assert "'forged-id'" in error["message"]

    async def test_a_second_result(self, frazil):
        """An early result with the right id is the function's answer; the second one ends the instance."""
        await frazil.deploy("twice")
        body = await frazil.invoke("twice", {"send": [{"type": "result", "id": "$id", "ok": True,
                                                       "result": "early"}], "return": "late"})
        assert body["success"] is True and body["result"] == "early"
        first = frazil.sandbox.created[-1].instance_id
        await eventually(lambda: first in frazil.sandbox.destroyed, what="the instance to be destroyed")
        after = await frazil.invoke("twice", {"return": "mine"})
        assert after["result"] == "mine" and after["cold"] is True
        frazil.pool.check()

    async def test_a_result_while_idle(self, frazil):
        """A result written after the answer, while the instance is parked, kills it there."""
        await frazil.deploy("idle")
        body = await frazil.invoke("idle", {"return": 1, "after": [{"type": "result", "id": "$id", "ok": True,
                                                                     "result": "stale"}]})
        assert body["result"] == 1
        first = frazil.sandbox.created[-1].instance_id
        await eventually(lambda: first not in frazil.sandbox.live, what="the instance to be killed")
        after = await frazil.invoke("idle", {"return": "mine"})
        assert after["result"] == "mine" and after["cold"] is True
        frazil.pool.check()

    @pytest.mark.parametrize("frame,why", [
        ({"type": "bogus"}, "a kind no runtime may send"),
        ({"type": "hello", "protocol": 2}, "during invocation"),
        ({"type": "ready"}, "during invocation"),
        ({"type": "invoke", "id": "$id"}, "a kind no runtime may send"),  # a platform -> runtime kind
        ({"id": "$id", "type": "result", "ok": True, "result": 1}, 'does not begin with {"type":"'),
        ({"raw": '{"type":"sdk_call","type":"result","id":"$id","ok":true}'}, "begins as 'sdk_call'"),
        ({"raw": '{"type":"result",oops}'}, "not JSON"),
        ({"type": "sdk_call", "call": 1, "op": "db.tables"}, "credential"),
        ({"type": "sdk_call", "call": 1, "op": "db.tables", "sdk_token": "made-up"}, "credential"),
    ])
    async def test_frames_out_of_place(self, frazil, frame, why):
        """Each frame the rules forbid fails the invocation with a message saying what was wrong."""
        await frazil.deploy("odd")
        error = await broken_then_fresh(frazil, "odd", {"hang": True, "send": [frame]})
        assert why in error["message"], error

    async def test_an_ended_invocations_token_is_only_refused(self, frazil):
        """A call with the previous invocation's token (a thread racing main's return) gets a
        CredentialRefused reply; the instance lives on."""
        await frazil.deploy("late")
        await frazil.invoke("late", {"return": 1})
        body = await frazil.invoke("late", {"sdk": [{"op": "db.tables", "sdk_token": "$previous_token"}]})
        assert body["success"] is True and body["cold"] is False
        assert body["result"][0]["ok"] is False and body["result"][0]["error"]["type"] == "CredentialRefused"
        assert frazil.sandbox.destroyed == []


class TestSdkBounds:
    """SDK calls are bounded per invocation, and none outlives its invocation."""

    async def test_calls_beyond_the_lane_are_refused_at_once(self, frazil_factory):
        """16 db calls run and `sdk_max_waiting` wait; the others are refused with TooManyCalls."""
        frazil = await frazil_factory(sdk_max_waiting=4)
        await frazil.deploy("many")
        body = await frazil.invoke("many", {"sdk": [{"op": "db.tables"}] * 60})
        assert body["success"] is True, body
        kinds = [r["error"]["type"] if not r["ok"] else "ok" for r in body["result"]]
        assert kinds == ["ok"] * 20 + ["TooManyCalls"] * 40
        assert frazil.sandbox.destroyed == []  # refusals are answers, not violations

    async def test_the_bytes_calls_hold_are_bounded(self, frazil, monkeypatch):
        """Calls whose frames would hold more than CALL_BYTES_HELD at once are refused at once."""
        monkeypatch.setattr(sdk_calls, "CALL_BYTES_HELD", 10_000)
        await frazil.deploy("heavy")
        call = {"op": "db.insert", "table": "heavy", "record": {"text": "y" * 3000}}
        body = await frazil.invoke("heavy", {"sdk": [call] * 5})
        kinds = [r["error"]["type"] if not r["ok"] else "ok" for r in body["result"]]
        assert kinds == ["ok"] * 3 + ["TooManyCalls"] * 2, body["result"]
        assert await frazil.platform.data.count("heavy", None, _admin()) == 3

    async def test_no_insert_after_the_invocation_ended(self, frazil):
        """2,000 db.insert frames, then the answer: the invocation ends at once, and the table
        stops changing when it has (no call of it goes on inserting)."""
        await frazil.deploy("flood")
        data = frazil.platform.data
        await data.put_table("flood", None, _admin())
        started = time.monotonic()
        body = await frazil.invoke("flood", {"flood": {"n": 2000, "call": {"op": "db.insert", "table": "flood",
                                                                          "record": {"x": 1}}}, "return": "done"})
        assert body["success"] is True and time.monotonic() - started < 5
        at_end = await data.count("flood", None, _admin())
        assert at_end < 2000  # most were refused
        loop = asyncio.get_running_loop()
        stable_until = loop.time() + 1.0
        while loop.time() < stable_until:  # a stability check: it stays equal for a second
            assert await data.count("flood", None, _admin()) == at_end
            await asyncio.sleep(0.05)


class BlockingSdk:
    """An SDK handler whose calls wait forever, recording which started and which were cancelled."""

    def __init__(self):
        self.started = 0
        self.cancelled = 0
        self.running = 0

    def __call__(self, instance, message):
        return self._serve()

    async def _serve(self):
        self.started += 1
        self.running += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


class TestCallsOfAnInvocation:
    """The instance's side: every call is a task of its invocation, gone when it ends."""

    @pytest.fixture
    async def pool(self, tmp_path):
        sdk = BlockingSdk()
        sandbox = FakeSandbox()
        pool = InstancePool(Settings(data_dir=tmp_path), sandbox, code_dir=_code_dir, layer_dirs=_no_layers,
                            sdk_handler=sdk)
        yield pool, sdk
        await pool.close()
        await sandbox.close()

    async def test_calls_end_with_their_invocation(self, pool):
        """The function answers with 50 calls running: invoke() returns only once none runs."""
        pool, sdk = pool
        instance, _ = await pool.acquire(make_version())
        gate = instance.proc._sandbox.gate("g")
        event = b'{"flood": {"n": 50, "call": {"op": "db.insert", "table": "t", "record": {}}}, "gate": "g"}'
        invocation = asyncio.ensure_future(instance.invoke("inv-1", event, cold=True, timeout_s=5))
        await gate.arrivals(1)
        await eventually(lambda: sdk.started == 50, what="the calls to start")
        gate.open()
        outcome = await invocation
        assert outcome.ok
        assert sdk.running == 0 and sdk.cancelled == 50  # at once: nothing was left to finish later
        pool.release(instance)

    async def test_calls_end_when_the_invocation_times_out(self, pool):
        """A call the function waits for is cut off at the invocation's deadline, with it."""
        pool, sdk = pool
        instance, _ = await pool.acquire(make_version())
        outcome = await instance.invoke("inv-1", b'{"sdk": [{"op": "db.count", "table": "t"}]}', cold=True,
                                        timeout_s=0.3)
        assert outcome.error["type"] == "Timeout"
        assert sdk.started == 1 and sdk.cancelled == 1 and sdk.running == 0
        pool.release(instance)


def _admin():
    from frazil.data.acl import ADMIN

    return ADMIN
