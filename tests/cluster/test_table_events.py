"""Table triggers in cluster mode (frazil.scheduler.table_events, frazil.cluster.queue), with real
`frazil server` processes on the real PostgreSQL and NATS: changes written through one gateway
fire their function on the invokers, one record each, seen through the other gateway."""
from __future__ import annotations

from tests.cluster.conftest import cluster_env
from tests.cluster.test_sync import node_id, started
from tests.e2e.test_table_events import ORDERS, WATCHER, insert_update_delete, table_records


class TestTableEvents:
    def test_changes_through_a_gateway_run_on_an_invoker_one_record_each(self, node_factory, postgres_url,
                                                                         nats_cluster):
        env = cluster_env(postgres_url, nats_cluster)
        a, b, *invokers = started(node_factory, [(env, "gateway"), (env, "gateway"),
                                                 (env, "invoker"), (env, "invoker")])
        ids = {node_id(srv) for srv in invokers}
        a.deploy("watcher", WATCHER, triggers=[ORDERS])

        events = insert_update_delete(a.client())
        records = table_records(b, "watcher", 3)
        assert [r["result"]["event"] for r in records] == events
        for record in records:
            assert (record["status"], record["mode"], record["trigger"], record["attempts"]) == \
                   ("succeeded", "async", "table", 1), record
            assert record["node"] in ids  # ran on an invoker, not on the gateway that took the write
        listed = b.client().get("/v1/invocations", params={"function": "watcher", "limit": 100}).json()
        assert sorted(r["id"] for r in listed["invocations"]) == sorted(r["id"] for r in records)
