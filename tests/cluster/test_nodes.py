"""Nodes, heartbeats and `GET /v1/cluster`, with real `frazil server` processes on the real
PostgreSQL and NATS: each node its own data dir and port, each test its own database and
cluster name (tests/cluster/conftest.py)."""
from __future__ import annotations

import signal
import time

import pytest

from frazil.testing import wait_until
from tests.cluster.conftest import cluster_env

NODE_KEYS = {"id", "role", "address", "started_at", "last_seen", "instances", "running"}


def nodes(srv) -> list[dict]:
    response = srv.client().get("/v1/cluster")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["nodes"]


def nodes_counted(srv, count: int, timeout: float, what: str) -> list[dict]:
    """The node list once it has `count` entries (polled with a deadline)."""
    def check():
        listed = nodes(srv)
        return listed if len(listed) == count else None
    return wait_until(check, timeout, interval=0.1, what=what)


class TestEmbedded:
    def test_the_one_node_is_listed(self, server_factory):
        srv = server_factory()
        [node] = nodes(srv)
        assert set(node) == NODE_KEYS
        assert node["role"] == "all"
        assert node["address"] == srv.url
        assert node["instances"] == {"idle": 0, "busy": 0}
        assert node["running"] == {"128": 0, "256": 0}
        assert node["id"] == srv.client().get("/healthz").json()["node"]
        assert srv.client().get("/v1/cluster").json()["mode"] == "embedded"

    def test_the_route_needs_the_admin_key(self, server_factory):
        srv = server_factory()
        assert srv.client(token=None).get("/v1/cluster").status_code == 401


class TestCluster:
    def test_gateway_and_invokers_register_and_a_killed_invoker_drops_out(self, node_factory, postgres_url,
                                                                          nats_cluster):
        env = cluster_env(postgres_url, nats_cluster)
        gateway = node_factory(env, "gateway")
        invokers = [node_factory(env, "invoker") for _ in range(2)]
        listed = nodes_counted(gateway, 3, 15, what="the gateway and both invokers in /v1/cluster")
        by_role = sorted(n["role"] for n in listed)
        assert by_role == ["gateway", "invoker", "invoker"]
        assert {n["address"] for n in listed} == {s.url for s in [gateway, *invokers]}
        for node in listed:
            assert set(node) == NODE_KEYS
            assert node["running"] == {"128": 0, "256": 0}
            assert node["last_seen"] >= node["started_at"]
        # Heartbeats go on: last_seen moves.
        first = {n["id"]: n["last_seen"] for n in listed}
        wait_until(lambda: all(n["last_seen"] > first[n["id"]] for n in nodes(gateway)), 10,
                   what="a second heartbeat of every node")

        victim = invokers[0]
        victim_id = victim.client().get("/healthz").json()["node"]
        victim.stop(signal.SIGKILL)  # no chance to deregister: only the TTL removes it
        killed_at = time.monotonic()
        remaining = nodes_counted(gateway, 2, 10, what="the killed invoker to drop out")
        # Its last heartbeat was at most 1 s before the kill; the entry lives 4 s after it.
        assert time.monotonic() - killed_at < 6
        assert victim_id not in {n["id"] for n in remaining}

        stopped_id = invokers[1].client().get("/healthz").json()["node"]
        invokers[1].stop(signal.SIGTERM)  # a clean stop deregisters at once
        [only] = nodes_counted(gateway, 1, 5, what="the stopped invoker to deregister")
        assert only["role"] == "gateway" and only["id"] != stopped_id

    def test_an_invoker_serves_only_health_and_metrics(self, node_factory, postgres_url, nats_cluster):
        invoker = node_factory(cluster_env(postgres_url, nats_cluster), "invoker")
        client = invoker.client()
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
        for path in ("/v1/functions", "/v1/cluster"):
            assert client.get(path).status_code == 404
        assert client.post("/v1/functions/x/invoke", content=b"{}").status_code == 404

    def test_a_gateway_without_invokers_answers_503_on_sync_and_queues_async(self, node_factory, postgres_url,
                                                                            nats_cluster):
        gateway = node_factory(cluster_env(postgres_url, nats_cluster), "gateway")
        # Deploys work on a gateway; a resident function starts no instance there.
        gateway.deploy("hello", {"index.py": "def main(event, context):\n    return 'hi'\n"}, resident=1)
        [node] = nodes(gateway)
        assert node["instances"] == {"idle": 0, "busy": 0}
        body = gateway.invoke("hello", expect=503)
        assert body["success"] is False
        assert "no invoker of cluster" in body["error"]["message"]
        page = gateway.client().get("/v1/functions/hello/invocations").json()
        assert page["invocations"] == []  # refused before anything was recorded
        # Async is accepted all the same (published to the JetStream queue), and runs once an
        # invoker joins.
        queued = gateway.invoke("hello", mode="async", expect=202)
        assert gateway.invocation(queued["invocation_id"])["status"] == "queued"
        node_factory(cluster_env(postgres_url, nats_cluster), "invoker")
        ran = gateway.wait_invocation(queued["invocation_id"], timeout=60)
        assert ran["status"] == "succeeded" and ran["result"] == "hi", ran


WHEEL_PROJECT_INDEX = "import tinypkg\ndef main(event, context):\n    return tinypkg.VALUE\n"


class TestSharedCode:
    def test_a_function_deployed_on_one_node_runs_on_another(self, node_factory, postgres_url, nats_cluster,
                                                            make_wheel):
        """Two `--role all` nodes on one database: A deploys (building the layer once, storing
        bundle and layer in PostgreSQL); B, which never saw either, fetches both at its first
        cold start, checks them, and runs the function. Each `all` node runs the sync
        invocations it receives itself (gateways are what route them)."""
        env = cluster_env(postgres_url, nats_cluster)
        a, b = node_factory(env, "all"), node_factory(env, "all")
        a.deploy("shared", {"index.py": WHEEL_PROJECT_INDEX,
                            "requirements.txt": "--no-index\n--find-links ./wheels\ntinypkg==1.0\n",
                            "wheels/tinypkg-1.0-py3-none-any.whl": make_wheel(body="VALUE = 'from the layer'\n")})
        assert not any((b.data_dir / "layers").glob("[0-9a-f]*"))
        assert b.invoke("shared")["result"] == "from the layer"
        assert a.invoke("shared")["result"] == "from the layer"
        queued = a.invoke("shared", mode="async", expect=202)  # through the JetStream queue: either node runs it
        record = a.wait_invocation(queued["invocation_id"])
        assert record["status"] == "succeeded" and record["result"] == "from the layer"
        assert len(list((b.data_dir / "layers").glob("[0-9a-f]*"))) == 1
        log = a.client().get("/v1/functions/shared/versions/1").json()["version"]["build_log"]
        assert "stored for the cluster" in log
        listed = nodes(b)
        assert sorted(n["role"] for n in listed) == ["all", "all"], listed

    def test_two_nodes_deploying_the_same_dependencies_at_once_build_them_once(self, node_factory, postgres_url,
                                                                              nats_cluster, make_wheel):
        """Two functions with the same requirements, deployed at the same moment on two nodes:
        one node builds the layer (under the PostgreSQL lock), the other waits and fetches it."""
        from concurrent.futures import ThreadPoolExecutor

        env = cluster_env(postgres_url, nats_cluster)
        a, b = node_factory(env, "all"), node_factory(env, "all")
        files = {"index.py": WHEEL_PROJECT_INDEX,
                 "requirements.txt": "--no-index\n--find-links ./wheels\ntinypkg==1.0\n",
                 "wheels/tinypkg-1.0-py3-none-any.whl": make_wheel(body="VALUE = 'once'\n")}
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda pair: pair[0].deploy(pair[1], files), [(a, "on-a"), (b, "on-b")]))
        logs = [srv.client().get(f"/v1/functions/{name}/versions/1").json()["version"]["build_log"]
                for srv, name in ((a, "on-a"), (b, "on-b"))]
        builds = [line for log in logs for line in log.splitlines() if line.startswith("building dependency layer")]
        assert len(builds) == 1, logs
        # The other node waited on the lock, or came late: either way it reused the cluster's layer.
        assert any("built for the cluster" in log for log in logs), logs
        assert a.invoke("on-a")["result"] == b.invoke("on-b")["result"] == "once"
