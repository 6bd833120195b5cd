"""The Python loop's side of the SDK channel, driven at the protocol level: SDK calls from the
handler, from threads and from async tasks get their own replies, whatever order they come in."""
from __future__ import annotations

import time
import uuid

from tests.runtimes.conftest import python_loop, start_loop, write_tree  # noqa: F401 (fixtures)


def start(driver, tmp_path, source: str) -> None:
    code = write_tree(tmp_path / "code", {"index.py": source})
    reply, _ = driver.init(code)
    assert reply["type"] == "ready", reply


def begin(driver, event, token="tok-1"):
    invocation_id = uuid.uuid4().hex
    marker = f"\n--frazil-{invocation_id}--\n"
    driver.send({"type": "invoke", "id": invocation_id, "event": event, "cold": False, "sdk_token": token,
                 "deadline_ms": time.time() * 1000 + 10_000, "log_marker": marker})
    return invocation_id, marker


def collect_calls(driver, n: int) -> list[dict]:
    calls = []
    while len(calls) < n:
        frame = driver.recv()
        assert frame is not None and frame["type"] == "sdk_call", frame
        calls.append(frame)
    return calls


def finish(driver, invocation_id, marker) -> dict:
    reply = driver.recv()
    assert reply["type"] == "result" and reply["id"] == invocation_id, reply
    driver._output_of(reply, marker)  # the marker, or the runtime's word that it skipped it
    return reply


THREADS = """
import threading
from frazil_sdk import db
def main(event, context):
    out = {}
    def work(k):
        out[k] = db.table('t').get(f'id-{k}')
    threads = [threading.Thread(target=work, args=(k,)) for k in range(event['n'])]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return out
"""

ASYNC = """
import asyncio
from frazil_sdk import aio, db
async def main(event, context):
    got = await asyncio.gather(*(aio.db.table('t').get(f'id-{k}') for k in range(event['n'])))
    return [got, db.table('t').count()]
"""


class TestPythonChannel:
    def test_threads_get_their_own_replies_in_any_order(self, python_loop, tmp_path):
        start(python_loop, tmp_path, THREADS)
        invocation_id, marker = begin(python_loop, {"n": 12})
        calls = collect_calls(python_loop, 12)
        assert {c["sdk_token"] for c in calls} == {"tok-1"} and len({c["call"] for c in calls}) == 12
        for call in reversed(calls):  # answered last-first
            python_loop.send({"type": "sdk_reply", "call": call["call"], "ok": True, "value": call["id"].upper()})
        reply = finish(python_loop, invocation_id, marker)
        assert reply["result"] == {str(k): f"ID-{k}" for k in range(12)}

    def test_async_calls_and_a_blocking_call_share_the_channel(self, python_loop, tmp_path):
        start(python_loop, tmp_path, ASYNC)
        for round_ in range(2):  # the helper thread is reused on a warm instance
            invocation_id, marker = begin(python_loop, {"n": 20}, token=f"tok-{round_}")
            calls = collect_calls(python_loop, 20)
            for call in calls[::2] + calls[1::2]:
                python_loop.send({"type": "sdk_reply", "call": call["call"], "ok": True, "value": call["id"]})
            (count,) = collect_calls(python_loop, 1)
            assert count["op"] == "db.count" and count["sdk_token"] == f"tok-{round_}"
            python_loop.send({"type": "sdk_reply", "call": count["call"], "ok": True, "value": 20})
            reply = finish(python_loop, invocation_id, marker)
            assert reply["result"] == [[f"id-{k}" for k in range(20)], 20]

    def test_errors_and_stray_replies(self, python_loop, tmp_path):
        """An error reply raises SdkError; a reply for no call is ignored; after main returns
        the SDK refuses to send."""
        start(python_loop, tmp_path, (
            "from frazil_sdk import db, SdkError\n"
            "LATER = []\n"
            "def main(event, context):\n"
            "    if event.get('after'):\n"
            "        try:\n"
            "            LATER[0]()\n"
            "        except SdkError as exc:\n"
            "            return exc.type\n"
            "    LATER.append(lambda: db.table('t').count())\n"
            "    try:\n"
            "        db.table('t').get('x')\n"
            "    except SdkError as exc:\n"
            "        return [exc.type, exc.status, str(exc)]\n"))
        invocation_id, marker = begin(python_loop, {})
        (call,) = collect_calls(python_loop, 1)
        python_loop.send({"type": "sdk_reply", "call": 999, "ok": True, "value": "stray"})
        python_loop.send({"type": "sdk_reply", "call": call["call"], "ok": False,
                          "error": {"type": "NotFound", "message": "no record 'x'", "status": 404}})
        assert finish(python_loop, invocation_id, marker)["result"] == ["NotFound", 404, "no record 'x'"]
        invocation_id, marker = begin(python_loop, {"after": True})
        # The kept closure runs in a new invocation, so it carries the new token and is sent.
        (call,) = collect_calls(python_loop, 1)
        assert call["op"] == "db.count" and call["sdk_token"] == "tok-1"
        python_loop.send({"type": "sdk_reply", "call": call["call"], "ok": False,
                          "error": {"type": "CredentialRefused", "message": "expired"}})
        assert finish(python_loop, invocation_id, marker)["result"] == "CredentialRefused"
