"""Answered sync calls keep their records across a crash (issue 11: "kill -9 right after answered
sync calls with every record present after restart"), on SQLite and on PostgreSQL.

The records are written to the store in batches after the answer; what a batch had not written
yet when the server was SIGKILLed must come back from the node's journal at the next start."""
from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

HELLO = {"index.py": "def main(event, context):\n    print('call', event['i'])\n    return event['i']\n"}
CALLS = 120


def all_records(srv, function: str) -> dict[str, dict]:
    """Every invocation record of `function`, by id (every page of the list)."""
    found: dict[str, dict] = {}
    cursor = None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        body = srv.client().get(f"/v1/functions/{function}/invocations", params=params).raise_for_status().json()
        found.update((r["id"], r) for r in body["invocations"])
        cursor = body["next_cursor"]
        if cursor is None:
            return found


def test_answered_sync_calls_keep_their_records_after_kill_9(backend_server):
    srv = backend_server()
    srv.deploy("hello", HELLO)
    srv.invoke("hello", {"i": -1})  # warm: the calls below answer within one batch window

    # Concurrent calls, so that many answers land in the batch the kill interrupts.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: srv.invoke("hello", {"i": i}), range(CALLS)))
    srv.stop(signal.SIGKILL)  # at once: no call ends, no batch gets its 50 ms

    assert [a["result"] for a in answers] == list(range(CALLS))
    srv.start()
    stored = all_records(srv, "hello")
    missing = [a["invocation_id"] for a in answers if a["invocation_id"] not in stored]
    assert not missing, f"{len(missing)} of {CALLS} answered invocations have no record after the restart"
    for a in answers:
        record = stored[a["invocation_id"]]
        assert (record["status"], record["mode"], record["attempts"]) == ("succeeded", "sync", 1), record
    # The logs and result came back too (the list leaves the event out, not these).
    last = srv.invocation(answers[-1]["invocation_id"])
    assert last["result"] == CALLS - 1 and f"call {CALLS - 1}" in last["logs"]
