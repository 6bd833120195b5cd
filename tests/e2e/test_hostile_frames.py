"""Hostile frames against a real server in the isolated sandbox: functions that write to the
runtime protocol channel themselves (the fd the Python loop talks on, reached through the SDK
bridge it publishes), as an attacker did.

Each case checks the invocation's answer, that the next call is cold on a fresh instance and
gets its own answer, that the server's memory stayed bounded (its peak RSS, VmHWM, read from
/proc before and after), and that a bystander function kept answering meanwhile.
"""
import threading
import time
from pathlib import Path

import pytest

from frazil.runtimes import protocol
from frazil.testing.waiting import wait_until
from tests.conftest import SANDBOX_PROBLEM

pytestmark = pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=SANDBOX_PROBLEM or "")

MIB = 1024 * 1024
# What a hostile case may add to the server's peak RSS: far below the bodies it announces
# or sends (66 MB, 7 MB, 20 MB of calls), above the platform's own per-frame and reply bounds.
MEMORY_BOUND = 100 * MIB

HOSTILE = r'''
import json, os, struct, sys, threading, time
from collections import Counter

def channel():
    return sys.modules['_frazil_sdk_bridge'].channel

def write(data):
    ch = channel()
    with ch._send_lock:  # whole frames, never cut into by the runtime's own writes
        view = memoryview(data)
        while view:
            view = view[os.write(ch._fd, view):]

def frame(message):
    payload = json.dumps(message, separators=(',', ':')).encode()
    return struct.pack('>I', len(payload)) + payload

def calls(op, n, **fields):
    token = sys.modules['_frazil_sdk_bridge'].token
    return b''.join(frame({'type': 'sdk_call', 'call': 10 ** 9 + i, 'sdk_token': token, 'op': op, **fields})
                    for i in range(n))

def main(event, context):
    attack = event.get('attack')
    iid = context.invocation_id
    if attack is None:
        return {'mine': event.get('n')}
    if attack == 'announce-66mb':
        write(struct.pack('>I', 66 * 1024 * 1024) + b'{"type":"result","id":"' + iid.encode() + b'","ok":true,"result":"')
        time.sleep(60)
    if attack == 'send-7mb':
        payload = b'{"type":"result","id":"' + iid.encode() + b'","ok":true,"result":"' + b'x' * 7000000 + b'"}'
        write(struct.pack('>I', len(payload)) + payload)
        time.sleep(60)
    if attack == 'forged-id':
        write(frame({'type': 'result', 'id': 'forged-' + iid, 'ok': True, 'result': 'forged'}))
        time.sleep(1)
        return 'real'
    if attack == 'big-sdk-call':
        write(struct.pack('>I', 9 * 1024 * 1024) + b'{"type":"sdk_call","call":1,"op":"db.insert","record":"')
        time.sleep(60)
    if attack == 'unknown-type':
        write(frame({'type': 'bogus', 'id': iid}))
        time.sleep(60)
    if attack == 'flood-return':  # raw calls, no reply read, answer at once
        write(calls('db.insert', event['n'], table=event['table'], record={'x': 1}))
        return 'flooded'
    if attack == 'flood-count':  # raw calls whose replies are collected, as the SDK's reader would
        ch, got, done = channel(), Counter(), threading.Event()
        def on_reply(reply):
            got['ok' if reply and reply.get('ok') else (reply or {}).get('error', {}).get('type')] += 1
            if sum(got.values()) == event['n']:
                done.set()
        with ch._cond:
            for i in range(event['n']):
                ch._async_calls[10 ** 9 + i] = on_reply
        token = sys.modules['_frazil_sdk_bridge'].token
        ch.call_async({'op': 'db.tables', 'sdk_token': token}, lambda reply: None)  # starts the reader (the pump)
        write(calls('db.insert', event['n'], table=event['table'], record={'x': 1}))
        done.wait(30)
        return dict(got)
    if attack == 'count-flood':  # 200,000 small calls, replies never read
        for _ in range(event['n'] // 10000):
            write(calls('db.count', 10000, table=event['table']))
        return 'flooded'
    return 'unknown attack'
'''


HOSTILE_NODE = r"""
const fs = require('fs');
const CHANNEL_FD = 3; // the Node loop's protocol channel
const sizeOf = (n) => { const h = Buffer.alloc(4); h.writeUInt32BE(n); return h; };
const frame = (message) => { const p = Buffer.from(JSON.stringify(message)); return Buffer.concat([sizeOf(p.length), p]); };
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
exports.main = async (event, context) => {
  const iid = context.invocation_id;
  if (event.attack === 'forged-id') {
    fs.writeSync(CHANNEL_FD, frame({ type: 'result', id: 'forged-' + iid, ok: true, result: 'forged' }));
    await pause(1000);
    return 'real';
  }
  if (event.attack === 'announce-66mb') {
    fs.writeSync(CHANNEL_FD, Buffer.concat([sizeOf(66 * 1024 * 1024),
      Buffer.from('{"type":"result","id":"' + iid + '","ok":true,"result":"')]));
    await pause(60000);
  }
  return { mine: event.n };
};
"""


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/pid/status")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import make_server

    server = make_server(tmp_path_factory.mktemp("frames") / "data", FRAZIL_SANDBOX="isolated")
    server.start()
    server.deploy("bystander", {"index.py": "def main(e, c):\n    return 'alive'\n"})
    server.deploy("hostile", {"index.py": HOSTILE}, timeout=20)
    server.deploy("flooder", {"index.py": HOSTILE}, timeout=5)
    server.deploy("hostile-node", {"index.js": HOSTILE_NODE}, timeout=20)
    yield server
    server.close()


def attack(srv, name: str, event: dict) -> dict:
    """Invoke `name` with `event` while the bystander is called over and over; the envelope.
    Also asserts the bystander always answered, and the server's peak memory stayed bounded."""
    answers, stop = [], threading.Event()

    def bystander():
        while not stop.is_set():
            answers.append(srv.invoke("bystander")["result"])

    srv.invoke("bystander")
    before = peak_rss(srv.pid)
    thread = threading.Thread(target=bystander)
    thread.start()
    try:
        body = srv.invoke(name, event)
    finally:
        stop.set()
        thread.join(30)
    answers.append(srv.invoke("bystander")["result"])
    assert set(answers) == {"alive"} and len(answers) >= 2
    grown = peak_rss(srv.pid) - before
    assert grown < MEMORY_BOUND, f"the server's peak RSS grew by {grown / MIB:.0f} MB"
    return body


def next_call_is_fresh(srv, name: str, body: dict) -> None:
    """After a hostile invocation, the next caller gets its own answer on a new instance."""
    record = srv.invocation(body["invocation_id"])
    after = srv.invoke(name, {"n": 7})
    assert after["result"] == {"mine": 7} and after["cold"] is True, after
    assert srv.invocation(after["invocation_id"])["instance_id"] != record["instance_id"]


class TestOversized:
    """Frames larger than their kind may be."""

    def test_a_result_announced_at_66_mb(self, srv):
        """A header announcing 66 MB ends the invocation at once with ResultTooLarge."""
        started = time.monotonic()
        body = attack(srv, "hostile", {"attack": "announce-66mb"})
        assert body["success"] is False and body["error"]["type"] == "ResultTooLarge", body
        assert str(66 * MIB) in body["error"]["message"]
        assert time.monotonic() - started < 15  # judged from the header, not at the 20 s timeout
        next_call_is_fresh(srv, "hostile", body)

    def test_a_result_sent_at_7_mb(self, srv):
        """A 7 MB result actually written: ResultTooLarge, refused before its body is held."""
        body = attack(srv, "hostile", {"attack": "send-7mb"})
        assert body["success"] is False and body["error"]["type"] == "ResultTooLarge", body
        next_call_is_fresh(srv, "hostile", body)

    def test_an_oversized_sdk_call(self, srv):
        """An sdk_call frame announcing 9 MB: ProtocolViolation naming the frame's kind."""
        body = attack(srv, "hostile", {"attack": "big-sdk-call"})
        assert body["success"] is False and body["error"]["type"] == "ProtocolViolation", body
        assert "'sdk_call' frame" in body["error"]["message"]
        next_call_is_fresh(srv, "hostile", body)


class TestNode:
    """The same rules hold whatever the runtime: a Node function writing to its channel fd."""

    def test_a_result_announced_at_66_mb(self, srv):
        """A header announcing 66 MB from Node: ResultTooLarge."""
        body = attack(srv, "hostile-node", {"attack": "announce-66mb"})
        assert body["success"] is False and body["error"]["type"] == "ResultTooLarge", body
        next_call_is_fresh(srv, "hostile-node", body)

    def test_a_result_for_another_invocation(self, srv):
        """A forged result with a wrong id from Node: ProtocolViolation; the next call is fresh."""
        body = attack(srv, "hostile-node", {"attack": "forged-id"})
        assert body["success"] is False and body["error"]["type"] == "ProtocolViolation", body
        assert f"'forged-{body['invocation_id']}'" in body["error"]["message"]
        next_call_is_fresh(srv, "hostile-node", body)


class TestForged:
    """Frames the protocol does not expect at that moment."""

    def test_a_result_for_another_invocation(self, srv):
        """A forged early result with a wrong id fails that invocation, naming the id; the real
        result never reaches the next caller, whose call is cold and gets its own answer."""
        body = attack(srv, "hostile", {"attack": "forged-id"})
        assert body["success"] is False and body["error"]["type"] == "ProtocolViolation", body
        assert f"'forged-{body['invocation_id']}'" in body["error"]["message"]
        next_call_is_fresh(srv, "hostile", body)

    def test_an_unknown_frame_type(self, srv):
        """A frame of a kind no runtime may send: ProtocolViolation naming the kind."""
        body = attack(srv, "hostile", {"attack": "unknown-type"})
        assert body["success"] is False and body["error"]["type"] == "ProtocolViolation", body
        assert "'bogus' frame (a kind no runtime may send)" in body["error"]["message"]
        next_call_is_fresh(srv, "hostile", body)


def record_count(srv, table: str) -> int:
    response = srv.client().get(f"/v1/tables/{table}")
    assert response.status_code == 200, response.text
    return response.json()["table"]["records"]


class TestSdkFlood:
    """Floods of raw sdk_call frames: bounded, answered, and cut off with their invocation."""

    def test_every_call_is_answered_and_the_excess_refused(self, srv):
        """20,000 raw db.insert frames whose replies the function reads: each is answered,
        most of them refused at once with TooManyCalls."""
        srv.client().put("/v1/tables/counted")
        body = attack(srv, "hostile", {"attack": "flood-count", "n": 20000, "table": "counted"})
        assert body["success"] is True, body
        got = body["result"]
        assert sum(got.values()) == 20000 and got["TooManyCalls"] > 10000, got
        assert got["ok"] == record_count(srv, "counted")

    def test_no_insert_after_the_invocation_ended(self, srv):
        """20,000 raw db.insert frames, then return: the invocation ends promptly, and no
        insert happens after it ended (the count stays equal for a second)."""
        srv.client().put("/v1/tables/flood")
        started = time.monotonic()
        body = attack(srv, "hostile", {"attack": "flood-return", "n": 20000, "table": "flood"})
        assert body["success"] is True and body["result"] == "flooded", body
        assert time.monotonic() - started < 10
        at_end = record_count(srv, "flood")
        assert at_end < 20000
        stable_until = time.monotonic() + 1.0

        def changed() -> bool:  # a stability check: polled until the second is over
            assert record_count(srv, "flood") == at_end, "an insert happened after the invocation ended"
            return time.monotonic() >= stable_until

        wait_until(changed, 5, interval=0.05, what="a second without inserts")

    def test_200000_small_calls_stay_bounded(self, srv):
        """200,000 db.count frames whose replies are never read: the platform stops reading
        once the unread replies reach their bound, the function blocks on its own writes until
        its timeout, and the server's memory stays bounded."""
        srv.client().put("/v1/tables/counts")
        body = attack(srv, "flooder", {"attack": "count-flood", "n": 200000, "table": "counts"})
        assert body["success"] is False and body["error"]["type"] == "Timeout", body
        next_call_is_fresh(srv, "flooder", body)
