"""The node registry on the real NATS (frazil.cluster.registry), in-process: entries, their
expiry, a clean deregistration, and the watch that brings them. The same with real server
processes is in test_nodes.py."""
from __future__ import annotations

import asyncio
import time

import pytest

from frazil.cluster.interfaces import NodeInfo
from frazil.cluster.nats import connect
from frazil.cluster.registry import NatsRegistry
from frazil.settings import Role, Settings
from tests.cluster.conftest import NATS_URL


def status():
    return {"idle": 2, "busy": 1}, {"128": 3, "256": 0}, [("hello", 3)]


@pytest.fixture
async def registry_factory(nats_cluster):
    """`await registry_factory(node_id, **settings)` → a started NatsRegistry; all closed after."""
    made = []

    async def make(node_id: str, **overrides) -> NatsRegistry:
        settings = Settings(nats_url=NATS_URL, cluster=nats_cluster, **overrides)
        nc = await connect(settings)
        now = time.time()
        registry = NatsRegistry(nc, settings, NodeInfo(node_id, Role.INVOKER, f"http://{node_id}", now, now), status)
        made.append(registry)
        await registry.start()
        return registry

    yield make
    for registry in made:
        # Bounded: a close that hangs fails here, naming the part, not at pytest's 300 s timeout.
        await asyncio.wait_for(registry.close(), 30)
        await asyncio.wait_for(registry.nc.close(), 30)


async def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


class TestNatsRegistry:
    async def test_every_node_is_listed_once_with_its_counts(self, registry_factory):
        """Read while both nodes heartbeat fast: never a node twice, never one missing."""
        a = await registry_factory("a", heartbeat_s=0.01)
        await registry_factory("b", heartbeat_s=0.01)
        await wait_for(lambda: _ids_are(a, ["a", "b"]), 10, "b's entry to reach a")
        for _ in range(30):
            await asyncio.sleep(0.01)
            listed = await a.nodes()
            assert [n.id for n in listed] == ["a", "b"]
        node = listed[0]
        assert node.role is Role.INVOKER and node.instances == {"idle": 2, "busy": 1}
        assert node.running == {"128": 3, "256": 0}
        assert node.warm == [("hello", 3)]

    async def test_a_node_that_stops_beating_expires(self, registry_factory):
        a = await registry_factory("a", node_ttl_s=1.0, heartbeat_s=0.2)
        b = await registry_factory("b", node_ttl_s=1.0, heartbeat_s=0.2)
        b._task.cancel()  # dies without a word: no deregistration
        started = time.monotonic()
        await wait_for(lambda: _ids_are(a, ["a"]), 5, "b to expire")
        assert time.monotonic() - started < 3

    async def test_a_clean_close_deregisters_at_once(self, registry_factory):
        a = await registry_factory("a")
        b = await registry_factory("b")
        await b.close()
        await wait_for(lambda: _ids_are(a, ["a"]), 2, "b's delete to reach a")


class TestTheWatch:
    async def test_joins_and_leaves_are_told_as_they_happen(self, registry_factory):
        """A node that joins or leaves is seen through the watch, not at the next read: the
        listener hears of it; heartbeats are slow here (10 s), so only the watch can tell."""
        a = await registry_factory("a", heartbeat_s=10.0, node_ttl_s=30.0)
        told = asyncio.Event()
        a.on_change(told.set)
        started = time.monotonic()
        b = await registry_factory("b", heartbeat_s=10.0, node_ttl_s=30.0)
        await asyncio.wait_for(told.wait(), 5)
        assert await _ids_are(a, ["a", "b"])
        told.clear()
        await b.close()
        await asyncio.wait_for(told.wait(), 5)
        assert await _ids_are(a, ["a"])
        assert time.monotonic() - started < 5  # neither waited for a heartbeat

    async def test_a_watch_that_goes_quiet_is_made_again(self, registry_factory):
        """The watch's subscription ends under it (as when NATS restarts and its consumer is
        gone): since this node's own puts stop coming back, it watches again, and a node that
        joins after that is seen."""
        a = await registry_factory("a", heartbeat_s=0.2, node_ttl_s=1.5)
        quiet = a.watcher
        await quiet._sub.unsubscribe()  # the watch's subscription ends; the registry is not told
        await registry_factory("b", heartbeat_s=0.2, node_ttl_s=1.5)
        await wait_for(lambda: _ids_are(a, ["a", "b"]), 15, "b to be seen by a new watch")
        assert a.watcher is not quiet


async def _ids_are(registry, ids) -> bool:
    return [n.id for n in await registry.nodes()] == ids
