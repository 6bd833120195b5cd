"""Dead letters and replay against a real server: records keep their event, the invocation
list filters by function, status and mode, and a retry runs a record's event again on the
function's active version."""
from __future__ import annotations

import json

import pytest

from frazil.testing import wait_until

# Fails until version 2 fixes it: the classic dead letter that a fix and a replay clear.
FAILING = {"index.py": "def main(event, context):\n    raise RuntimeError('bad ' + str(event['n']))\n"}
FIXED = {"index.py": "def main(event, context):\n    return {'n': event['n'], 'version': context.version}\n"}


def listing(server, **params) -> dict:
    response = server.client().get("/v1/invocations", params=params)
    assert response.status_code == 200, response.text
    return response.json()


class TestRecordsKeepTheirEvent:
    def test_sync_and_async_records_show_the_event(self, server, unique_name):
        """GET /v1/invocations/{id} shows the event of sync and async invocations."""
        server.deploy(unique_name, FIXED)
        sync = server.invoke(unique_name, {"n": 1})
        assert server.invocation(sync["invocation_id"])["event"] == {"n": 1}
        queued = server.invoke(unique_name, {"n": 2}, mode="async", expect=202)
        assert server.wait_invocation(queued["invocation_id"])["event"] == {"n": 2}


class TestListing:
    def test_filters_and_pages(self, server, unique_name):
        """function, status and mode filter; pages follow next_cursor, newest first."""
        server.deploy(unique_name, FAILING)
        failed = [server.invoke(unique_name, {"n": n})["invocation_id"] for n in range(3)]
        server.deploy(unique_name, FIXED)
        ok = server.invoke(unique_name, {"n": 9})["invocation_id"]
        everything = listing(server, function=unique_name)["invocations"]
        assert [r["id"] for r in everything] == [ok, *reversed(failed)]
        assert "event" not in everything[0]  # lists leave events out: one record has it
        first = listing(server, function=unique_name, status="failed", mode="sync", limit=2)
        assert [r["id"] for r in first["invocations"]] == [failed[2], failed[1]]
        rest = listing(server, function=unique_name, status="failed", mode="sync", limit=2,
                       cursor=first["next_cursor"])
        assert [r["id"] for r in rest["invocations"]] == [failed[0]] and rest["next_cursor"] is None
        assert listing(server, function=unique_name, mode="async", expect=202)["invocations"] == []
        assert {r["function"] for r in listing(server, status="failed", limit=500)["invocations"]} >= {unique_name}

    @pytest.mark.parametrize("params, word", [
        ({"status": "broken"}, "status"), ({"mode": "later"}, "mode"), ({"function": "Bad Name"}, "function name"),
    ])
    def test_bad_filter_is_400_naming_it(self, server, params, word):
        """An unknown status or mode, or an invalid function name, is a 400 naming it."""
        response = server.client().get("/v1/invocations", params=params)
        assert response.status_code == 400 and word in response.json()["message"]

    def test_cursor_of_another_filter_is_400(self, server, unique_name):
        """A cursor belongs to its filters: continuing another list with it is refused."""
        server.deploy(unique_name, FIXED)
        for n in range(2):
            server.invoke(unique_name, {"n": n})
        cursor = listing(server, function=unique_name, limit=1)["next_cursor"]
        response = server.client().get("/v1/invocations", params={"status": "failed", "cursor": cursor})
        assert response.status_code == 400 and "cursor" in response.json()["message"]


class TestRetry:
    def test_dead_letter_replays_on_the_fixed_version(self, server, unique_name):
        """An async invocation that failed all its attempts, replayed after a fix, succeeds as
        a new record with trigger `retry` and `retry_of`."""
        server.deploy(unique_name, FAILING)
        dead = server.wait_invocation(server.invoke(unique_name, {"n": 5}, mode="async", expect=202)["invocation_id"])
        assert dead["status"] == "failed" and dead["error"]["message"] == "bad 5"
        server.deploy(unique_name, FIXED)
        response = server.client().post(f"/v1/invocations/{dead['id']}/retry")
        assert response.status_code == 202, response.text
        assert response.json()["retry_of"] == dead["id"]
        replay = server.wait_invocation(response.json()["invocation_id"])
        assert replay["status"] == "succeeded" and replay["result"] == {"n": 5, "version": 2}
        assert (replay["trigger"], replay["retry_of"], replay["event"]) == ("retry", dead["id"], {"n": 5})
        assert server.invocation(dead["id"])["status"] == "failed"  # the dead letter stays as it was

    def test_sync_retry_answers_the_envelope(self, server, unique_name):
        """?mode=sync replays now and answers the envelope."""
        server.deploy(unique_name, FIXED)
        first = server.invoke(unique_name, {"n": 3})
        response = server.client().post(f"/v1/invocations/{first['invocation_id']}/retry", params={"mode": "sync"})
        assert response.status_code == 200 and response.json()["result"] == {"n": 3, "version": 1}
        record = server.invocation(response.json()["invocation_id"])
        assert record["retry_of"] == first["invocation_id"] and record["trigger"] == "retry"

    def test_refusals(self, server, unique_name):
        """An unknown record is 404; a queued one is 409; a bad mode is 400."""
        assert server.client().post("/v1/invocations/nope/retry").status_code == 404
        server.deploy(unique_name, FIXED)
        queued = server.client().post(f"/v1/functions/{unique_name}/invoke",
                                      params={"mode": "async", "delay_s": 600}, json={"n": 1}).json()
        response = server.client().post(f"/v1/invocations/{queued['invocation_id']}/retry")
        assert response.status_code == 409 and "queued" in response.json()["message"]
        done = server.invoke(unique_name, {"n": 2})
        bad = server.client().post(f"/v1/invocations/{done['invocation_id']}/retry", params={"mode": "later"})
        assert bad.status_code == 400 and "mode" in bad.json()["message"]

    def test_cli_retry(self, server, unique_name):
        """`frazil retry ID` prints the new invocation's id."""
        server.deploy(unique_name, FIXED)
        first = server.invoke(unique_name, {"n": 4})
        done = server.cli("retry", first["invocation_id"])
        assert done.returncode == 0, done.stderr
        new_id = json.loads(done.stdout)["invocation_id"]
        record = wait_until(lambda: (r := server.invocation(new_id))["status"] == "succeeded" and r, 30,
                            what="the replay to succeed")
        assert record["retry_of"] == first["invocation_id"]
