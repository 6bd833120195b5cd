"""The gateway-invoker messages (frazil.cluster.wire): in-process, no services."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import orjson
import pytest

from frazil.cluster import wire
from frazil.errors import NotFound
from frazil.store.models import Access, FunctionVersion, InvocationRecord, InvocationStatus, Trigger, VersionStatus

VERSION = FunctionVersion(function="fn", number=3, status=VersionStatus.READY, runtime="python3", handler="index.main",
                          memory_mb=256, timeout_s=5.0, env={"A": "1"}, resident=0, access=Access.USER, http=True,
                          bundle_hash="ab" * 32, bundle_bytes=10, layer_key=None, created_at=1.5,
                          triggers=({"type": "schedule", "cron": "* * * * *", "event": {}},))


def new_record(event: str | None = '{"x":1}') -> InvocationRecord:
    return InvocationRecord(id="r1", function="fn", version=3, mode="sync", status=InvocationStatus.QUEUED,
                            created_at=2.0, trigger=Trigger.HTTP, caller='{"id":"u","username":"ann"}', depth=1,
                            event=event)


class FakeNats:
    """Collects what `wire.send` publishes, as messages a subscriber would get."""

    def __init__(self, max_payload: int):
        self.max_payload = max_payload
        self.sent = []

    async def publish(self, subject, payload=b"", reply="", headers=None):
        assert len(payload) <= self.max_payload
        self.sent.append(SimpleNamespace(subject=subject, data=payload, reply=reply, headers=headers))


class TestMessages:
    def test_a_request_carries_the_version_and_the_record_to_run(self):
        data = wire.encode_request(VERSION, new_record(), b'{"x":1}', timeout_s=2.5, slot_wait_s=0.0)
        request = wire.decode_request(data)
        assert request.version == VERSION
        assert request.event_json == b'{"x":1}' and request.timeout_s == 2.5 and request.slot_wait_s == 0.0
        record = request.record
        assert (record.id, record.trigger, record.caller, record.depth, record.event) == \
            ("r1", Trigger.HTTP, '{"id":"u","username":"ann"}', 1, '{"x":1}')
        assert record.status is InvocationStatus.QUEUED and record.node is None

    def test_an_event_not_kept_on_the_record_is_not_kept_there_either(self):
        data = wire.encode_request(VERSION, new_record(event=None), b'{"x":1}', timeout_s=None, slot_wait_s=1.0)
        request = wire.decode_request(data)
        assert request.record.event is None and request.timeout_s is None

    def test_a_done_reply_fills_the_gateways_record_in(self):
        ran = dataclasses.replace(new_record(), status=InvocationStatus.SUCCEEDED, node="inv-1", attempts=1,
                                  cold=False, instance_id="i9", started_at=3.0, finished_at=3.5, duration_ms=500.0,
                                  result='{"ok":true}', logs="hello\n")
        answer = wire.decode_reply(wire.encode_done(ran))
        assert answer.kind is wire.Reply.DONE
        mine = new_record()
        wire.apply_run(mine, answer)
        assert mine == ran

    def test_a_failed_run_has_no_result(self):
        ran = dataclasses.replace(new_record(), status=InvocationStatus.TIMEOUT, error=orjson.dumps(
            {"type": "Timeout", "message": "too slow", "stack": ""}).decode())
        mine = new_record()
        wire.apply_run(mine, wire.decode_reply(wire.encode_done(ran)))
        assert mine.status is InvocationStatus.TIMEOUT and mine.result is None and mine.error == ran.error

    def test_refusals(self):
        refused = wire.decode_reply(wire.encode_refused("full"))
        assert (refused.kind, refused.message) == (wire.Reply.REFUSED, "full")
        failed = wire.decode_reply(wire.encode_failed(NotFound("gone")))
        assert (failed.kind, failed.status, failed.type, failed.message) == (wire.Reply.FAILED, 404, "NotFound", "gone")

    @pytest.mark.parametrize("data", [b"", b"not json\n{}", b'{"v": 2}\n', b'{"v": 1}', b'{"v": 1, "kind": "x"}\n',
                                      b'{"v": 1, "version": {}}\n', b"[1]\n"])
    def test_anything_else_is_a_wire_error(self, data):
        with pytest.raises(wire.WireError):
            wire.decode_request(data)
        with pytest.raises(wire.WireError):
            wire.decode_reply(data)


class TestParts:
    async def test_a_small_message_is_one_message_without_headers(self):
        nc = FakeNats(max_payload=1 << 20)
        await wire.send(nc, "s", b"small", "inbox.1", "inbox.1")
        [msg] = nc.sent
        assert msg.headers is None and msg.reply == "inbox.1"
        assert wire.Assembler(100).feed(msg) == (b"small", "inbox.1")

    async def test_a_large_message_travels_in_parts_and_comes_out_whole(self):
        nc = FakeNats(max_payload=wire.PART_HEADROOM + 1000)
        data = bytes(range(256)) * 20  # 5120 bytes: 6 parts
        await wire.send(nc, "s", data, "inbox.7", "inbox.7")
        assert len(nc.sent) == 6 and nc.sent[0].reply == "inbox.7" and not nc.sent[1].reply
        assembler = wire.Assembler(10_000)
        fed = [assembler.feed(m) for m in nc.sent]
        assert fed[:-1] == [None] * 5 and fed[-1] == (data, "inbox.7") and assembler.pending == 0

    async def test_parts_of_two_calls_interleaved(self):
        nc = FakeNats(max_payload=wire.PART_HEADROOM + 10)
        await wire.send(nc, "s", b"a" * 25, "in.a", "in.a")
        await wire.send(nc, "s", b"b" * 25, "in.b", "in.b")
        a, b = nc.sent[:3], nc.sent[3:]
        assembler = wire.Assembler(100)
        out = [assembler.feed(m) for pair in zip(a, b) for m in pair]
        assert [x for x in out if x] == [(b"a" * 25, "in.a"), (b"b" * 25, "in.b")]

    async def test_a_missing_part_loses_the_call_and_nothing_else(self):
        nc = FakeNats(max_payload=wire.PART_HEADROOM + 10)
        await wire.send(nc, "s", b"a" * 25, "in.a", "in.a")
        assembler = wire.Assembler(100)
        assert assembler.feed(nc.sent[0]) is None
        assert assembler.feed(nc.sent[2]) is None  # part 2 lost on the way
        assert assembler.pending == 0 and assembler.dropped == 1

    async def test_a_call_larger_than_the_bound_is_dropped(self):
        nc = FakeNats(max_payload=wire.PART_HEADROOM + 10)
        await wire.send(nc, "s", b"a" * 25, "in.a", "in.a")
        assembler = wire.Assembler(15)
        assert [assembler.feed(m) for m in nc.sent] == [None, None, None]
        assert assembler.pending == 0 and assembler.dropped >= 1

    async def test_incomplete_calls_together_are_bounded_too(self):
        nc = FakeNats(max_payload=wire.PART_HEADROOM + 10)
        assembler = wire.Assembler(25)
        for n in range(wire.PARTIAL_CALLS_HELD * 3):  # first parts of many calls, none complete
            await wire.send(nc, "s", b"a" * 25, f"in.{n}", f"in.{n}")
            assembler.feed(nc.sent[-3])
        assert assembler.pending * 10 <= wire.PARTIAL_CALLS_HELD * 25 < assembler.pending * 10 + 10
        assert assembler.dropped == wire.PARTIAL_CALLS_HELD * 3 - assembler.pending

    def test_a_call_whose_parts_stopped_coming_is_forgotten(self, monkeypatch):
        clock = [100.0]
        monkeypatch.setattr(wire.time, "monotonic", lambda: clock[0])
        assembler = wire.Assembler(100)
        part = SimpleNamespace(data=b"x", reply="in.a", headers={wire.CALL_HEADER: "in.a", wire.PART_HEADER: "1/2"})
        assert assembler.feed(part) is None and assembler.pending == 1
        clock[0] += wire.PARTIAL_MAX_AGE_S + 1
        other = SimpleNamespace(data=b"y", reply="in.b", headers={wire.CALL_HEADER: "in.b", wire.PART_HEADER: "1/2"})
        assembler.feed(other)
        assert assembler.pending == 1 and assembler.dropped == 1

    def test_bad_part_headers_are_dropped(self):
        assembler = wire.Assembler(100)
        for headers in ({wire.PART_HEADER: "1/2"}, {wire.CALL_HEADER: "c", wire.PART_HEADER: "x"},
                        {wire.CALL_HEADER: "c", wire.PART_HEADER: "3/2"}):
            assert assembler.feed(SimpleNamespace(data=b"z", reply="", headers=headers)) is None
        assert assembler.pending == 0
