"""Tier limits hold for the whole cluster (frazil.cluster.slots), end to end: two real
`frazil server --role all` nodes on one PostgreSQL database and NATS cluster name, each running
the sync calls it receives."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx

from frazil.testing import wait_until
from tests.cluster.conftest import cluster_env
from tests.cluster.test_nodes import nodes

# Holds its tier slot until the test inserts a record into the table `gate` (no timing involved:
# every call blocks for as long as the test needs, far longer than the sync retry window).
GATED = """import time
from frazil_sdk import db


def main(event, context):
    gate = db.table("gate")
    deadline = time.time() + 120
    while not gate.count() and time.time() < deadline:
        time.sleep(0.2)
    return "passed"
"""


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of [start, end] intervals that overlap at one instant (one that ends
    at the instant another starts does not overlap it)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    highest = current = 0
    for _, step in edges:  # at equal times -1 sorts first: an end before a start
        current += step
        highest = max(highest, current)
    return highest


def test_fourteen_calls_on_two_nodes_run_ten_at_once_and_four_get_429(node_factory, postgres_url, nats_cluster):
    """A 256 MB function (tier limit 10), 14 concurrent sync calls, 7 through each node, each
    holding its slot well past the 2 s sync retry window: exactly 10 run, 4 are refused with
    429, and the records' [started, finished] intervals never overlap more than 10 at once."""
    env = cluster_env(postgres_url, nats_cluster)
    a, b = node_factory(env, "all"), node_factory(env, "all")
    a.deploy("held", {"index.py": GATED}, memory=256)
    assert a.client().put("/v1/tables/gate").status_code == 200
    limit = 10

    def call(srv) -> httpx.Response:
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.admin_key}"},
                          timeout=180) as client:
            return client.post("/v1/functions/held/invoke", content=b"{}")

    with ThreadPoolExecutor(max_workers=14) as pool:
        calls = [pool.submit(call, srv) for srv in (a, b) for _ in range(7)]
        wait_until(lambda: sum(c.done() for c in calls) == 4, 120, interval=0.1,
                   what="the four calls beyond the limit to be refused")
        refused = [c.result() for c in calls if c.done()]
        assert [r.status_code for r in refused] == [429] * 4, [r.text for r in refused]
        assert all("256 MB tier is at its limit of 10" in r.json()["error"]["message"] for r in refused)
        # The ten others hold their slots meanwhile: the nodes count them.
        wait_until(lambda: sum(n["running"]["256"] for n in nodes(a)) == limit, 30, interval=0.1,
                   what="ten running calls in the nodes' heartbeats")
        assert a.client().post("/v1/tables/gate/records", json={"open": True}).status_code == 200
        answers = [c.result() for c in calls]
    passed = [r for r in answers if r.status_code == 200]
    assert len(passed) == limit and all(r.json()["result"] == "passed" for r in passed)

    def records():
        found = {}
        for srv in (a, b):  # each node's page flushes that node's pending records first
            for record in srv.client().get("/v1/functions/held/invocations").json()["invocations"]:
                found[record["id"]] = record
        return found if len(found) == limit else None

    found = wait_until(records, 30, what="the ten records")
    assert all(r["status"] == "succeeded" for r in found.values())
    assert {r["node"] for r in found.values()} <= {n["id"] for n in nodes(a)}
    assert most_at_once([(at(r["started_at"]), at(r["finished_at"])) for r in found.values()]) <= limit
