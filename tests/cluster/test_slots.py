"""Cluster-wide tier admission (frazil.cluster.slots) on the real PostgreSQL: several
ClusterAdmission objects in this process, each with its own engine and node id, stand for the
nodes of one cluster on one database (its own per test)."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, func, select, text

from frazil import wiring
from frazil.cluster.names import slot_lock_key
from frazil.cluster.slots import HUNG_LEASE_S, ClusterAdmission
from frazil.errors import ServiceUnavailable
from frazil.settings import Settings
from frazil.store.db import open_engine
from frazil.store.schema import tier_slot_leases
from tests.inproc.harness import eventually, frazil_factory  # noqa: F401  (frazil_factory: a fixture)

TIER = 256


@pytest.fixture
async def node_factory(postgres_url, tmp_path):
    """`await node_factory(name, limit=.., block=.., idle_s=.., lease_s=..)` → a started
    ClusterAdmission of one tier on its own engine; all closed after the test."""
    made: list[tuple[ClusterAdmission, object]] = []

    async def make(name: str, *, limit: int, block: int = 2, idle_s: float = 600.0, lease_s: float = 600.0,
                   start: bool = True) -> ClusterAdmission:
        engine = await open_engine(Settings(data_dir=tmp_path / name, database_url=postgres_url))
        node = ClusterAdmission(engine, name, {TIER: limit}, block=block, idle_s=idle_s, lease_s=lease_s)
        made.append((node, engine))
        if start:
            await node.start()
            await asyncio.wait_for(node.listening.wait(), 30)
        return node

    yield make
    for node, engine in made:
        await node.close()
        await engine.dispose()


async def rows(node: ClusterAdmission) -> dict[str, tuple[int, int, float]]:
    """node -> (slots, wanted, expires_at) of the tier's rows, and the database clock as 'now'."""
    async with node.ledger.engine.connect() as conn:
        found = (await conn.execute(select(tier_slot_leases.c.node, tier_slot_leases.c.slots, tier_slot_leases.c.wanted,
                                           tier_slot_leases.c.expires_at))).all()
    return {r.node: (r.slots, r.wanted, r.expires_at) for r in found}


async def db_now(node: ClusterAdmission) -> float:
    async with node.ledger.engine.connect() as conn:
        return float((await conn.execute(select(func.extract("epoch", func.clock_timestamp())))).scalar_one())


class TestTheLimitHolds:
    async def test_nodes_hammering_one_tier_never_run_more_than_its_limit(self, node_factory):
        """Three nodes, four callers each, take and give 120 slots of a tier of 5 in all: the
        shared count of running callers never passes 5, each runs only on a lease in force,
        and every call gets its slot in the end."""
        limit = 5
        nodes = [await node_factory(f"node-{i}", limit=limit, block=2, idle_s=0.05) for i in range(3)]
        running = 0
        highest = 0
        done = 0

        async def caller(node: ClusterAdmission):
            nonlocal running, highest, done
            slots = node.slots(TIER)
            for _ in range(10):
                assert await slots.take(60)
                assert slots.in_force and slots.running <= slots.granted
                running += 1
                highest = max(highest, running)
                assert running <= limit
                for _ in range(3):  # hold it across a few turns of the loop
                    await asyncio.sleep(0)
                running -= 1
                slots.give()
                done += 1

        await asyncio.gather(*(caller(node) for node in nodes for _ in range(4)))
        assert done == 120 and running == 0
        assert highest > 1  # several ran at once, across nodes
        leased = await rows(nodes[0])
        assert sum(slots for slots, _, _ in leased.values()) <= limit

    async def test_dispatcher_style_try_take_learns_of_room_through_on_free(self, node_factory):
        """try_take() cannot wait: when it finds no room the node leases in the background and
        calls on_free once a slot can be had."""
        node = await node_factory("a", limit=2, block=0)
        slots = node.slots(TIER)
        freed = asyncio.Event()
        slots.on_free = freed.set
        assert not slots.try_take()  # nothing leased yet
        await asyncio.wait_for(freed.wait(), 30)
        assert slots.try_take()
        assert slots.running == 1


class TestDeadNodes:
    async def test_a_dead_nodes_slots_come_back_only_after_they_expire(self, node_factory):
        """Node A holds the whole tier and stops renewing (it died, or PostgreSQL is out of its
        reach): A stops running on its lease first (on_lapse), and B gets the slots only once
        A's rows have expired on the database's clock."""
        a = await node_factory("a", limit=2, block=0, lease_s=1.5)
        b = await node_factory("b", limit=2, block=0, lease_s=1.5)
        order: list[str] = []
        a.on_lapse = lambda mb: order.append(f"a lapsed {mb}")
        a_slots, b_slots = a.slots(TIER), b.slots(TIER)
        assert await a_slots.take(30) and await a_slots.take(30)
        expires_at = (await rows(a))["a"][2]
        for task in a._tasks:  # A renews no more (and gives nothing back)
            task.cancel()

        assert not await b_slots.take(0)
        assert await b_slots.take(60)
        order.append("b took")
        assert await db_now(b) >= expires_at
        assert order == [f"a lapsed {TIER}", "b took"]
        assert not a_slots.in_force and not a_slots.has_room()
        a_slots.give()  # A's callers give their slots back as their killed invocations end
        a_slots.give()
        assert a_slots.running == 0

    async def test_a_restarted_node_gives_back_what_its_previous_run_leased(self, node_factory):
        a = await node_factory("a", limit=3, block=1)
        assert await a.slots(TIER).take(30)
        assert (await rows(a))["a"][0] == 2
        again = await node_factory("a", limit=3, block=1)  # the same node id: its previous run died
        assert await rows(again) == {}


class TestBlocks:
    async def test_most_takes_make_no_query(self, node_factory):
        """100 calls one after another, and 4 at a time: the block leased by the first take
        serves them all; the database sees one lease transaction for each."""
        node = await node_factory("a", limit=10, block=4)
        statements: list[str] = []
        event.listen(node.ledger.engine.sync_engine, "before_cursor_execute",
                     lambda conn, cursor, statement, *args: statements.append(statement))
        slots = node.slots(TIER)
        for _ in range(100):
            assert await slots.take(30)
            slots.give()
        leases = [s for s in statements if "pg_advisory_xact_lock" in s]
        assert len(leases) == 1, statements

        async def four_at_a_time():
            for _ in range(25):
                assert await slots.take(30)
                await asyncio.sleep(0)
                slots.give()

        await asyncio.gather(*(four_at_a_time() for _ in range(4)))
        leases = [s for s in statements if "pg_advisory_xact_lock" in s]
        assert len(leases) == 1, statements  # 4 at once fit in the 1 + 4 leased at first

    async def test_the_spare_grows_to_what_ran_at_once(self, node_factory):
        """With a block of 1, a node that ran 6 at once leases room for 6 more beyond what it
        needs when it next grows, so a swing of 6 then needs no query."""
        node = await node_factory("a", limit=50, block=1)
        slots = node.slots(TIER)
        for _ in range(6):  # one at a time past the lease: each take after the first leases again
            assert await slots.take(30)
        for _ in range(6):
            slots.give()
        assert slots.granted <= 6 + 6
        for _ in range(slots.granted + 1):  # past the lease: it grows once more, by the peak
            assert await slots.take(30)
        assert slots.granted >= slots.running + 6, (slots.granted, slots.running)
        statements: list[str] = []
        event.listen(node.ledger.engine.sync_engine, "before_cursor_execute",
                     lambda conn, cursor, statement, *args: statements.append(statement))
        for _ in range(6):
            assert slots.try_take()
        assert not [s for s in statements if "pg_advisory_xact_lock" in s]

    async def test_a_peak_outlives_the_window_it_was_seen_in(self, node_factory):
        """Six ran at once, then one runs on past the end of the window (`idle_s`) that saw the
        six: a renewal then still keeps room for a swing of six beyond what runs (the peak of
        the last window or two), not just the block."""
        idle_s = 4.0  # long enough that a loaded machine's stall does not end two windows at once
        node = await node_factory("a", limit=50, block=1, idle_s=idle_s)
        slots = node.slots(TIER)
        loop = asyncio.get_running_loop()
        began = loop.time()
        for _ in range(6):
            assert await slots.take(30)
        for _ in range(5):
            slots.give()
        while loop.time() < began + idle_s:  # the window that saw the six ends
            await asyncio.sleep(0.05)
        slots.give()
        assert await slots.take(0)  # used lately: the renewal keeps a spare
        await node.renew_once()
        assert slots.granted >= slots.running + 6, (slots.granted, slots.running)

    async def test_idle_slots_go_back_to_the_cluster(self, node_factory):
        """A node that used a slot keeps its block for a while, then gives it all back."""
        node = await node_factory("a", limit=10, block=4, idle_s=0.2)
        slots = node.slots(TIER)
        assert await slots.take(30)
        assert (await rows(node))["a"][0] == 5
        slots.give()
        for _ in range(600):  # renewals shrink the lease once the tier is idle (30 s at most)
            await node.renew_once()
            if not await rows(node):
                break
            await asyncio.sleep(0.05)
        assert await rows(node) == {}
        assert slots.granted == 0 and slots.running == 0

    async def test_spare_slots_go_to_a_node_that_waits(self, node_factory):
        """A holds a block it does not use; B needs more than is free: A gives its spares back
        at once (not after its idle time) and B's callers get them."""
        a = await node_factory("a", limit=4, block=3)
        b = await node_factory("b", limit=4, block=0)
        assert await a.slots(TIER).take(30)
        assert (await rows(a))["a"][0] == 4  # the whole tier, three of it spare
        takes = [asyncio.create_task(b.slots(TIER).take(60)) for _ in range(3)]
        assert await asyncio.gather(*takes) == [True, True, True]
        leased = await rows(a)
        assert leased["a"][0] == 1 and leased["b"][0] == 3
        assert a.slots(TIER).running == 1 and b.slots(TIER).running == 3

    async def test_no_more_run_than_a_shrinking_lease_keeps(self, node_factory):
        """While the transaction that gives spare slots back waits (another node holds the
        tier's lock), the node takes no slot beyond what it is about to keep."""
        a = await node_factory("a", limit=6, block=4)
        slots = a.slots(TIER)
        assert await slots.take(30)
        assert slots.granted == 5
        async with a.ledger.engine.connect() as other:
            await other.execute(text("SELECT pg_advisory_lock(:key)"), {"key": slot_lock_key(TIER)})
            slots.wanted_elsewhere()  # another node's notice: give the spares back
            await asyncio.sleep(0)  # the give-back starts, and waits for the lock
            assert not await slots.take(0)  # 4 spare, but the lease being written keeps 1
            await other.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": slot_lock_key(TIER)})
            await other.commit()
        await a.renew_once()  # after the give-back (one transaction of a tier at a time)
        assert (await rows(a))["a"][0] == slots.granted == 1 and slots.running == 1

    async def test_a_clean_close_gives_everything_back(self, node_factory):
        a = await node_factory("a", limit=3, block=1)
        b = await node_factory("b", limit=3, block=0)
        assert await a.slots(TIER).take(30)
        a.slots(TIER).give()
        await a.close()
        assert "a" not in await rows(b)
        assert all(await asyncio.gather(*(b.slots(TIER).take(30) for _ in range(3))))


class TestCallersThatWillNotWait:
    """take(0): a gateway asks an invoker not to wait for a slot to free (it would ask the next
    invoker instead, mostly as a cold start there). Finding no room leased here is no reason
    to refuse while the cluster has free slots: the lease grows into them."""

    async def test_they_get_the_slots_the_lease_grows_into(self, node_factory):
        node = await node_factory("a", limit=20, block=1)
        slots = node.slots(TIER)
        assert await slots.take(0)  # nothing leased yet: the first lease
        takes = await asyncio.gather(*(slots.take(0) for _ in range(8)))  # beyond the block leased
        assert takes == [True] * 8
        assert slots.running == 9 <= slots.granted and slots.waiting == 0

    async def test_they_are_refused_once_the_cluster_is_full(self, node_factory):
        a = await node_factory("a", limit=3, block=0)
        b = await node_factory("b", limit=3, block=0)
        assert all(await asyncio.gather(*(a.slots(TIER).take(30) for _ in range(2))))
        assert await b.slots(TIER).take(0)  # the last free slot
        assert not await b.slots(TIER).take(0)  # a lease found none free
        assert not await a.slots(TIER).take(0)
        assert b.slots(TIER).waiting == a.slots(TIER).waiting == 0
        b.slots(TIER).give()  # b keeps it leased (its idle time is long): b's next caller gets it
        assert await b.slots(TIER).take(0)


@pytest.fixture
async def leased_platform(frazil_factory, postgres_url, tmp_path, monkeypatch):  # noqa: F811
    """`await leased_platform(**settings)`: an in-process platform (fake sandbox, SQLite store)
    whose tier slots are a ClusterAdmission on the test's PostgreSQL database, leased for 1.5 s."""
    engine = await open_engine(Settings(data_dir=tmp_path / "slots", database_url=postgres_url))

    def cluster_admission(settings, _engine, node):
        return ClusterAdmission(engine, node, {mb: t.concurrency for mb, t in settings.tiers.items()},
                                block=1, idle_s=600.0, lease_s=1.5)

    monkeypatch.setattr(wiring, "admission", cluster_admission)
    yield frazil_factory
    await engine.dispose()  # after frazil_factory's platforms stopped (fixtures end in reverse)


class TestRunningWork:
    """What a node does with the invocations it runs when its lease lapses (rule 3)."""

    async def test_a_lapsed_lease_stops_the_invocations_running_on_it(self, leased_platform, monkeypatch):
        """PostgreSQL goes out of reach while an invocation runs: the lease is not renewed, and
        when it lapses the invocation is stopped (its instance killed), failed with a message
        that says why; its slot comes back and nothing else starts on the lapsed lease."""
        frazil = await leased_platform(sync_retry_s=5.0)
        await frazil.deploy("hung")
        admission = frazil.platform.admission
        call = asyncio.create_task(frazil.invoke("hung", {"hang": True}, expect=None))
        await eventually(lambda: frazil.sandbox.running == 1, 30, "the invocation to run")

        async def unreachable(*args, **kwargs):
            raise OSError("connection refused")
        monkeypatch.setattr(admission.ledger, "lease", unreachable)
        body = await asyncio.wait_for(call, 30)
        assert body["success"] is False
        assert body["error"]["type"] == "RuntimeExited"
        assert "lost its lease on 128 MB tier slots" in body["error"]["message"]
        slots = admission.slots(128)
        assert slots.running == 0 and not slots.in_force and not slots.try_take()

    async def test_nothing_starts_on_a_lease_that_lapsed_while_its_instance_got_ready(self, leased_platform,
                                                                                       monkeypatch):
        frazil = await leased_platform()
        await frazil.deploy("late")
        pool = frazil.platform.pool
        lease = pool.lease

        async def lease_then_lapse(version):
            got = await lease(version)
            frazil.platform.admission.slots(version.memory_mb).in_force_until = 0.0  # ran out meanwhile
            return got
        monkeypatch.setattr(pool, "lease", lease_then_lapse)
        body = await frazil.invoke("late", {"return": "ran"}, expect=None)
        assert body["success"] is False
        assert body["error"]["message"].startswith("not started: this node lost its lease")
        assert frazil.sandbox.attempts.get(body["invocation_id"]) is None  # the runtime never saw it


class TestPostgresOutOfReach:
    """PostgreSQL lost while a node runs: what it leased still serves (never beyond the lease),
    a caller who would need a new lease is told that PostgreSQL is unreachable rather than
    "full", and the node leases again by itself once the database is back."""

    async def test_no_room_without_the_database_is_a_503_naming_postgresql_and_it_recovers(
            self, private_database, tmp_path):
        engine = await open_engine(Settings(data_dir=tmp_path / "node", database_url=private_database.url))
        node = ClusterAdmission(engine, "node", {TIER: 3}, block=1, idle_s=600.0, lease_s=600.0)
        try:
            await node.start()
            slots = node.slots(TIER)
            assert await slots.take(30) and slots.granted == 2  # one for the caller, a block of one spare

            await asyncio.to_thread(private_database.cut)  # every connection ended, new ones refused
            assert await slots.take(30)  # the spare leased slot: the lease is in force, no query
            loop = asyncio.get_running_loop()
            began = loop.time()
            with pytest.raises(ServiceUnavailable, match=r"database \(PostgreSQL\) is unreachable") as refused:
                await slots.take(60)  # no room here: one lease attempt, refused, not a wait to 'full'
            assert loop.time() - began < 30
            assert f"cannot lease {TIER} MB tier slots" in refused.value.message
            assert not await slots.take(0)  # a caller that would not wait is refused as before (full here)
            assert slots.running == 2 and slots.waiting == 0

            await asyncio.to_thread(private_database.restore)
            assert await slots.take(60)  # the same node, no restart: it leases again
            assert slots.running == 3 and slots.unreachable is None
            for _ in range(3):
                slots.give()
        finally:
            await node.close()
            await engine.dispose()

    async def test_a_lease_transaction_that_hangs_is_a_503_not_a_429(self, node_factory):
        """PostgreSQL accepts the transaction and does not answer it (here: the tier's ledger
        lock held by another session): a caller whose wait ends after HUNG_LEASE_S hears that
        the database does not answer; once it does, callers get slots again."""
        node = await node_factory("a", limit=2, block=0)
        slots = node.slots(TIER)
        async with node.ledger.engine.connect() as other:
            await other.execute(text("SELECT pg_advisory_lock(:key)"), {"key": slot_lock_key(TIER)})
            await other.commit()
            with pytest.raises(ServiceUnavailable, match="has not answered a lease transaction"):
                await slots.take(HUNG_LEASE_S + 1.0)
            await other.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": slot_lock_key(TIER)})
            await other.commit()
        assert await slots.take(30)
        slots.give()
