"""PostgreSQL lost while a cluster runs, with real `frazil server` processes on a database of
the test's own that it makes unreachable (every connection ended, new ones refused) and brings
back: sync calls answer 503 naming the database (never 429: the tier is not full), async
invocations accepted before wait and run once it is back, and the nodes recover by themselves."""
from __future__ import annotations

from frazil.testing import wait_until
from tests.cluster.conftest import cluster_env
from tests.cluster.test_async_queue import records_of
from tests.cluster.test_nodes import nodes_counted
from tests.cluster.test_sync import _answered, echo, started


class TestPostgresOutage:
    def test_sync_calls_answer_503_accepted_async_work_waits_and_everything_recovers(
            self, node_factory, private_database, nats_cluster):
        # The invoker gives idle slots back at once: a call after the cut needs a new lease.
        env = cluster_env(private_database.url, nats_cluster)
        gateway, _ = started(node_factory, [(env, "gateway"), ({**env, "FRAZIL_SLOT_IDLE_S": 0}, "invoker")])
        nodes_counted(gateway, 2, 15, what="the gateway and the invoker")
        gateway.deploy("echo", echo(1))
        assert gateway.invoke("echo")["success"] is True
        queued = []
        for n in range(3):  # accepted now, due while the database is away
            response = gateway.client().post("/v1/functions/echo/invoke", params={"mode": "async", "delay_s": "2"},
                                             content=b'{"pad": "q"}')
            assert response.status_code == 202, response.text
            queued.append(response.json()["invocation_id"])

        private_database.cut()
        seen: list[int] = []

        def refused():
            response = gateway.client().post("/v1/functions/echo/invoke", content=b"{}")
            seen.append(response.status_code)
            return response.json() if response.status_code == 503 else None

        body = wait_until(refused, 30, what="a 503 while PostgreSQL is away")
        for _ in range(3):
            refused()
        assert set(seen) <= {200, 503}, seen  # what ran had a lease; nothing was called "full"
        assert seen[-3:] == [503] * 3, seen
        message = body["error"]["message"]
        assert "database (PostgreSQL) is unreachable" in message or "database is unreachable" in message, message
        assert "127.0.0.1" not in message, message  # where the database is stays in the log

        private_database.restore()
        answer = wait_until(lambda: _answered(gateway), 60, what="sync calls to work again")
        assert answer["success"] is True and answer["result"]["version"] == 1
        for invocation_id in queued:
            record = gateway.wait_invocation(invocation_id, timeout=60)
            assert record["status"] == "succeeded" and record["result"]["pad"] == "q", record
        async_records = [r for r in records_of(gateway, "echo") if r["mode"] == "async"]
        assert sorted(r["id"] for r in async_records) == sorted(queued)  # one record each
