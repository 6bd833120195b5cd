"""Resident instances shared among the invokers of a cluster (frazil.cluster.residents).

`TestPlacement`: two or three placers in one process, each over its own InstancePool on the
fake sandbox, reading one registry list that the test edits (a node joins or leaves) and one
list of versions. `TestCluster`: real `frazil server` processes on the real PostgreSQL and
NATS: the residents spread over the invokers, and an invoker killed with SIGKILL has its share
taken over by the survivors."""
from __future__ import annotations

import asyncio
import signal

from frazil.cluster.interfaces import NodeInfo
from frazil.cluster.residents import PlacedResidents
from frazil.pool.pool import InstancePool
from frazil.settings import Role, Settings
from frazil.testing import wait_until
from frazil.testing.processes import descendants, start_time
from tests.cluster.conftest import cluster_env
from tests.cluster.test_nodes import nodes, nodes_counted
from tests.cluster.test_sync import echo, node_id, started
from tests.inproc.fake_sandbox import FakeSandbox
from tests.inproc.harness import eventually, make_version
from tests.pool.conftest import _code_dir, _no_layers


class Cluster:
    """What the placers read: the live nodes (the test edits `ids`) and the active versions."""

    def __init__(self, ids: list[str]):
        self.ids = list(ids)
        self.versions = []
        self.reads = 0

    async def nodes(self) -> list[NodeInfo]:
        nodes = [NodeInfo(i, Role.INVOKER, f"http://{i}", 0.0, 1.0) for i in self.ids]
        return nodes + [NodeInfo("gw", Role.GATEWAY, "http://gw", 0.0, 1.0)]  # never holds any

    async def with_residents(self):
        self.reads += 1
        return list(self.versions)


def residents(pool: InstancePool) -> int:
    return sum(1 for i in pool.instances() if i.resident and i.alive)


def held(placers) -> dict[tuple[str, int], int]:
    """Live residents per version, over all the placers' pools."""
    counts: dict[tuple[str, int], int] = {}
    for placer in placers:
        for instance in placer.pool.instances():
            if instance.resident and instance.alive:
                counts[instance.version.key] = counts.get(instance.version.key, 0) + 1
    return counts


class TestPlacement:
    async def _placers(self, tmp_path, cluster: Cluster, ids: list[str]):
        made = []
        for node in ids:
            pool = InstancePool(Settings(data_dir=tmp_path / node), FakeSandbox(), code_dir=_code_dir,
                                layer_dirs=_no_layers)
            placer = PlacedResidents(node, cluster, cluster, pool, check_s=0.05)
            await placer.start()
            made.append(placer)
        return made

    async def _close(self, placers) -> None:
        for placer in placers:
            await placer.close()
            await placer.pool.close()
            await placer.pool.sandbox.close()

    async def test_shares_follow_joins_leaves_and_changes(self, tmp_path):
        cluster = Cluster(["a", "b"])
        cluster.versions = [make_version("five", resident=5), make_version("one", resident=1)]
        a, b, c = placers = await self._placers(tmp_path, cluster, ["a", "b", "c"])
        try:
            # c runs but is not in the registry yet: it keeps none; a and b share all.
            await eventually(lambda: residents(a.pool) + residents(b.pool) == 6, what="a and b to hold all 6")
            assert sorted([residents(a.pool), residents(b.pool)]) == [3, 3] and residents(c.pool) == 0

            cluster.ids = ["a", "b", "c"]  # c joins: 2 + 2 + 2, the others stop their extra ones
            await eventually(lambda: [residents(p.pool) for p in placers] == [2, 2, 2], what="three shares of two")

            cluster.ids = ["b", "c"]  # a leaves the registry: b and c take its share over
            await eventually(lambda: residents(b.pool) + residents(c.pool) == 6, what="b and c to hold all 6")
            # a, which no longer sees itself (cut off from NATS, or dying), keeps what it has: its
            # view says nothing about the others.
            assert residents(a.pool) == 2
            for placer in placers:
                placer.pool.check()
            await self._close([a])  # and dies
            placers = [b, c]

            # A new version replaces `five` (announced: changed()); `one` loses its residents.
            reads = cluster.reads
            cluster.versions = [make_version("five", number=2, resident=2)]
            for placer in placers:
                placer.changed()
            await eventually(lambda: held(placers) == {("five", 2): 2}, what="only v2's two residents")
            assert cluster.reads >= reads + 2  # each live placer read the versions again at once
        finally:
            await self._close(placers)

    async def test_nothing_changes_nothing_is_read(self, tmp_path):
        """Between full passes a placer reads the registry only, and places nothing anew."""
        cluster = Cluster(["a"])
        cluster.versions = [make_version("steady", resident=2)]
        [a] = await self._placers(tmp_path, cluster, ["a"])
        try:
            await eventually(lambda: residents(a.pool) == 2, what="two residents")
            reads = cluster.reads
            assert await a.place_once() is False
            await asyncio.sleep(0)
            assert cluster.reads == reads
        finally:
            await self._close([a])


def resident_counts(gateway, invoker_ids: list[str]) -> dict[str, int]:
    """Idle instances per live invoker (the test's function is never called: all are residents)."""
    return {n["id"]: n["instances"]["idle"] + n["instances"]["busy"] for n in nodes(gateway)
            if n["id"] in invoker_ids}


def settled(gateway, invoker_ids: list[str], total: int, timeout: float, what: str) -> dict[str, int]:
    """The counts once exactly `invoker_ids` are listed and hold `total` between them, shares
    differing by at most one (polled with a deadline)."""
    def check():
        counts = resident_counts(gateway, invoker_ids)
        if set(counts) == set(invoker_ids) and sum(counts.values()) == total and \
                max(counts.values()) - min(counts.values()) <= 1:
            return counts
        return None
    return wait_until(check, timeout, interval=0.2, what=what)


class TestCluster:
    def test_residents_spread_and_move_when_an_invoker_dies(self, node_factory, postgres_url, nats_cluster):
        env = cluster_env(postgres_url, nats_cluster)
        gateway, *invokers = started(node_factory, [(env, "gateway"), (env, "invoker"), (env, "invoker"),
                                                    (env, "invoker")])
        ids = [node_id(srv) for srv in invokers]
        nodes_counted(gateway, 4, 30, what="the gateway and three invokers")

        gateway.deploy("warm", echo(1), resident=5)
        spread = settled(gateway, ids, 5, 60, what="5 residents spread over three invokers")
        assert sorted(spread.values()) == [1, 2, 2], spread

        # SIGKILL the invoker with the most: its instances die with it, and within the TTL and a
        # check the two survivors hold all five.
        victim_id = max(spread, key=spread.get)
        [victim] = [srv for srv in invokers if node_id(srv) == victim_id]
        tree = {pid: start_time(pid) for pid in descendants(victim.pid)}
        assert tree, "the invoker runs its instances below it"
        victim.stop(signal.SIGKILL)
        survivors = [i for i in ids if i != victim_id]
        after = settled(gateway, survivors, 5, 60, what="the survivors to hold all 5 residents")
        assert sorted(after.values()) == [2, 3], after
        # No instance of the dead invoker is left (they follow their platform's death).
        wait_until(lambda: all(start_time(pid) != started for pid, started in tree.items()), 30,
                   what="the killed invoker's instances to be gone")

        # Settled means settled: no extra instance appears later on either survivor.
        assert sum(resident_counts(gateway, survivors).values()) == 5
        # And they serve the function warm.
        answer = gateway.invoke("warm")
        assert answer["success"] is True and answer["cold"] is False, answer
