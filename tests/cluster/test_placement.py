"""Which invoker a gateway asks first (frazil.cluster.placement, and the gateway's view of the
invokers in frazil.cluster.router.Directory): in-process, no services."""
from __future__ import annotations

import math
import time
from collections import Counter

from frazil.cluster import placement
from frazil.cluster.interfaces import NodeInfo
from frazil.cluster.router import Directory
from frazil.settings import Role

NODES = [f"inv-{i}" for i in range(5)]


def node(node_id: str, role: Role = Role.INVOKER, warm=(), last_seen: float = 1.0, started_at: float = 0.0):
    return NodeInfo(node_id, role, f"http://{node_id}", started_at, last_seen, warm=list(warm))


class TestRendezvous:
    def test_the_same_order_whatever_the_order_of_the_nodes(self):
        key = ("resize", 3)
        assert placement.rendezvous(NODES, key) == placement.rendezvous(list(reversed(NODES)), key)
        assert sorted(placement.rendezvous(NODES, key)) == sorted(NODES)

    def test_versions_spread_over_the_invokers(self):
        firsts = Counter(placement.rendezvous(NODES, (f"fn-{i}", 1))[0] for i in range(1000))
        assert set(firsts) == set(NODES)
        assert min(firsts.values()) > 120  # 200 each if perfectly even

    def test_a_node_leaving_moves_only_the_versions_it_ranked_first(self):
        keys = [(f"fn-{i}", 1) for i in range(300)]
        before = {k: placement.rendezvous(NODES, k) for k in keys}
        after = {k: placement.rendezvous(NODES[1:], k) for k in keys}
        for k in keys:
            if before[k][0] != NODES[0]:
                assert after[k][0] == before[k][0]
            else:
                assert after[k][0] == before[k][1]  # the fall-through is the next in the old order

    def test_a_node_joining_takes_only_versions_for_itself(self):
        keys = [(f"fn-{i}", 1) for i in range(300)]
        for k in keys:
            first = placement.rendezvous([*NODES, "newcomer"], k)[0]
            assert first in ("newcomer", placement.rendezvous(NODES, k)[0])

    def test_versions_of_one_function_are_placed_independently(self):
        assert len({placement.rendezvous(NODES, ("fn", n))[0] for n in range(1, 40)}) > 1


class TestBoundedLoad:
    ORDER = ["a", "b", "c"]

    def test_below_the_floor_nothing_moves(self):
        load = {"a": placement.LOAD_FLOOR - 1}
        assert placement.bounded(self.ORDER, load, placement.LOAD_FLOOR - 1) is self.ORDER

    def test_an_invoker_at_its_bound_goes_behind_the_others_in_their_order(self):
        # 12 in flight over 3: the bound is 1.25 x 13 / 3 -> 6
        assert placement.bounded(self.ORDER, {"a": 6, "b": 5, "c": 1}, 12) == ["b", "c", "a"]
        assert placement.bounded(self.ORDER, {"a": 5, "b": 6, "c": 1}, 12) == ["a", "c", "b"]
        assert placement.bounded(self.ORDER, {"a": 5, "b": 5, "c": 2}, 12) == self.ORDER

    def test_the_bound_is_never_below_the_floor(self):
        floor = placement.LOAD_FLOOR
        assert placement.bounded(["a", "b"] + [f"x{i}" for i in range(8)], {"a": floor - 1}, floor)[0] == "a"
        assert placement.bounded(["a", "b"], {"a": floor}, floor)[0] == "b"

    def test_a_hot_version_spreads_over_every_invoker(self):
        """Calls of one version placed one after the other, none ending: the first ones stay
        where the version is warm, every invoker gets some, none more than its bound (the
        bound caps the busiest; the others fill in rendezvous order)."""
        load: Counter = Counter()
        placed = []
        for total in range(30):
            first = placement.bounded(self.ORDER, load, total)[0]
            load[first] += 1
            placed.append(first)
        assert placed[:placement.LOAD_FLOOR] == ["a"] * placement.LOAD_FLOOR
        assert set(load) == set(self.ORDER)
        assert max(load.values()) <= math.ceil(placement.LOAD_FACTOR * 30 / 3), load


class TestWarmFirst:
    def test_warm_invokers_come_first_in_rendezvous_order(self):
        key = ("resize", 3)
        ranked = placement.rendezvous(NODES, key)
        warm = {ranked[4], ranked[2]}
        assert placement.order(NODES, key, warm) == [ranked[2], ranked[4], ranked[0], ranked[1], ranked[3]]

    def test_without_warm_invokers_the_rendezvous_order(self):
        assert placement.order(NODES, ("fn", 1), set()) == placement.rendezvous(NODES, ("fn", 1))


class TestDirectory:
    def test_routes_to_invokers_and_all_nodes_warm_first(self):
        directory = Directory()
        directory.update([node("gw", Role.GATEWAY), node("a", Role.ALL), node("i1"),
                          node("i2", warm=[("fn", 2), ("other", 1)])])
        assert {n.id for n in directory.order(("fn", 2))} == {"a", "i1", "i2"}
        assert directory.order(("fn", 2))[0].id == "i2"
        assert [n.id for n in directory.order(("fn", 1))] == placement.rendezvous(["a", "i1", "i2"], ("fn", 1))

    def test_a_silent_invoker_is_set_aside_until_it_heartbeats_again(self):
        directory = Directory()
        directory.update([node("i1", last_seen=10.0), node("i2", last_seen=10.0)])
        directory.suspect(directory.invokers["i1"])
        assert [n.id for n in directory.order(("fn", 1))] == ["i2"]
        directory.update([node("i1", last_seen=10.0), node("i2", last_seen=11.0)])  # no newer heartbeat of i1
        assert [n.id for n in directory.order(("fn", 1))] == ["i2"]
        directory.update([node("i1", last_seen=11.5), node("i2", last_seen=12.0)])  # i1 is back (restarted?)
        assert {n.id for n in directory.order(("fn", 1))} == {"i1", "i2"}

    def test_an_invoker_gone_from_the_registry_is_gone_from_routing(self):
        directory = Directory()
        directory.update([node("i1"), node("i2", warm=[("fn", 1)])])
        directory.update([node("i1")])
        assert [n.id for n in directory.order(("fn", 1))] == ["i1"]
        directory.update([])
        assert directory.order(("fn", 1)) == []

    def test_the_registry_entry_round_trips_warm_versions_but_the_api_hides_them(self):
        info = node("i1", warm=[("fn", 2)], last_seen=time.time())
        again = NodeInfo.from_json(info.to_json())
        assert again.warm == [("fn", 2)]
        assert "warm" not in again.public_json()


class TestResidentShares:
    def test_the_shares_add_up_and_differ_by_at_most_one(self):
        for count in range(0, 12):
            for live in (NODES[:1], NODES[:2], NODES[:3], NODES):
                shares = [placement.resident_share(live, ("warm", 2), count, n) for n in live]
                assert sum(shares) == count, (count, live, shares)
                assert max(shares) - min(shares) <= 1

    def test_every_node_reckons_the_same_whatever_the_order(self):
        key = ("resident", 1)
        mine = [placement.resident_share(NODES, key, 7, n) for n in NODES]
        theirs = [placement.resident_share(list(reversed(NODES)), key, 7, n) for n in NODES]
        assert mine == theirs

    def test_the_extra_ones_go_down_the_rendezvous_order(self):
        key = ("resident", 4)
        first, second, third = placement.rendezvous(NODES[:3], key)
        assert [placement.resident_share(NODES[:3], key, 5, n) for n in (first, second, third)] == [2, 2, 1]

    def test_a_node_not_live_keeps_none(self):
        assert placement.resident_share(NODES[:2], ("f", 1), 5, "gone") == 0

    def test_a_node_leaving_moves_its_share_to_the_others(self):
        key = ("moves", 1)
        before = {n: placement.resident_share(NODES[:3], key, 6, n) for n in NODES[:3]}
        after = {n: placement.resident_share(NODES[1:3], key, 6, n) for n in NODES[1:3]}
        assert before == {n: 2 for n in NODES[:3]} and after == {n: 3 for n in NODES[1:3]}
