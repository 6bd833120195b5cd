"""A delayed invocation survives a restart of the server: it is a queued record with a due
time in the store, which the next process's dispatcher runs once that time comes."""
from __future__ import annotations

import time
from datetime import datetime

import httpx

from frazil.testing.server import HTTP_TIMEOUT_S

HELLO = {"index.py": "def main(event, context):\n    return {'hello': event.get('name')}\n"}
# Long enough that the server is surely stopped before the invocation falls due.
DELAY_S = 8


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_delayed_invocation_runs_after_a_restart(server_factory, unique_name):
    """Queued with not_before and trigger `delay`; the server stops before it is due; the
    restarted server runs it, once, no earlier than not_before, on the same node id."""
    srv = server_factory()
    srv.deploy(unique_name, HELLO)
    response = srv.client().post(f"/v1/functions/{unique_name}/invoke",
                                 params={"mode": "async", "delay_s": DELAY_S}, json={"name": "later"})
    assert response.status_code == 202, response.text
    invocation_id = response.json()["invocation_id"]
    queued = srv.invocation(invocation_id)
    assert (queued["status"], queued["trigger"]) == ("queued", "delay")
    not_before = ts(queued["not_before"])
    assert DELAY_S - 0.1 <= not_before - ts(queued["created_at"]) <= DELAY_S + 0.1
    node = httpx.get(f"{srv.url}/healthz", timeout=HTTP_TIMEOUT_S).json()["node"]

    srv.stop()
    assert time.time() < not_before, "the server took too long to stop for this test to mean anything"
    srv.start()

    done = srv.wait_invocation(invocation_id, timeout=DELAY_S + 30)
    assert done["status"] == "succeeded" and done["result"] == {"hello": "later"}
    assert done["attempts"] == 1 and done["trigger"] == "delay"
    assert ts(done["started_at"]) >= not_before
    assert done["node"] == node == httpx.get(f"{srv.url}/healthz", timeout=HTTP_TIMEOUT_S).json()["node"]
