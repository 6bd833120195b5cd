"""Which invoker a gateway asks first to run a version: warm instances first, then rendezvous.

`order(invokers, key, warm)` ranks the live invokers for the version `key` = (function, number):

1. those that reported an idle warm instance of the version (their heartbeat's `warm`), so a
   call lands warm whichever gateway takes it;
2. then all the others.

Why the heartbeat carries the warm versions (rather than a bucket or subject of their own):
the claim "I hold version V warm" then lives and expires with the invoker's liveness in one
entry, so routing never believes a dead invoker warm; nothing more is stored or cleaned up;
and its age (at most `heartbeat_s` plus a gateway's registry refresh) costs at most a cold
start, never a failed call, since an invoker runs any version it is sent.

Within each group invokers are ranked by rendezvous (highest random weight) hashing of the
version over the invokers' ids: every gateway computes the same ranking without talking to
the others, one version's cold starts concentrate on its first invoker (where its instances
then stay warm), and when an invoker joins or leaves only the versions it ranks first for
move. A gateway tries the invokers in this order and falls through to the next when one is
full (frazil.cluster.router).

`bounded(order, load, total)` then keeps any invoker from taking far more than its share of a
gateway's calls in flight (consistent hashing with bounded loads): an invoker that already has
`LOAD_FACTOR` x the average of them (and at least `LOAD_FLOOR`) goes behind the others. Why: a
hot version, or the few versions hashed to one invoker, would otherwise run where they are
warm however busy that invoker is, while the others idle (bench.cluster, 24 functions over
three invokers: one ran 42-46 % of the calls at its CPU cap while another had CPU to spare).
Calls in flight are the load because a busy invoker holds its calls longer: the count is exact
and immediate on the gateway, with no report to wait for. The cost is that a version whose
calls overflow its invoker starts instances on the next one (cold starts and memory there),
only while its calls in flight exceed that bound; below `LOAD_FLOOR` calls in flight nothing
moves.

`resident_share(invokers, key, count, node)` uses the same ranking to deal a version's resident
instances among the live invokers: each node computes its own share, and the shares of all
add up to `count` (frazil.cluster.residents).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TypeVar

VersionKey = tuple[str, int]
T = TypeVar("T")

LOAD_FACTOR = 1.25  # an invoker may hold this times the average of a gateway's calls in flight
LOAD_FLOOR = 4  # ... and always this many: bursts of a few calls stay where they are warm


def weight(node_id: str, key: VersionKey) -> int:
    """The rendezvous weight of `node_id` for the version `key`: a hash of both, the same on
    every node and across restarts."""
    text = f"{key[0]}\0{key[1]}\0{node_id}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def rendezvous(node_ids: Iterable[str], key: VersionKey) -> list[str]:
    """`node_ids` from the highest weight for `key` to the lowest (ties, which need a hash
    collision, broken by id)."""
    return sorted(node_ids, key=lambda node: (-weight(node, key), node))


def order(node_ids: Iterable[str], key: VersionKey, warm: Collection[str]) -> list[str]:
    """The order in which to ask the invokers `node_ids` to run the version `key`; `warm` holds
    the ids of those that hold an idle instance of it."""
    ranked = rendezvous(node_ids, key)
    return [n for n in ranked if n in warm] + [n for n in ranked if n not in warm]


def resident_share(node_ids: Collection[str], key: VersionKey, count: int, node: str) -> int:
    """How many of the version `key`'s `count` resident instances `node` keeps, when the
    invokers `node_ids` (`node` among them) share them: dealt one by one down the version's
    rendezvous order, so shares differ by at most one, they add up to `count` on every node's
    reckoning, and one version's extra instance lands where its cold starts go. A node not
    among `node_ids` keeps none."""
    ranked = rendezvous(node_ids, key)
    if node not in ranked:
        return 0
    base, extra = divmod(count, len(ranked))
    return base + (1 if ranked.index(node) < extra else 0)


def bounded(ranked: Sequence[T], load: Mapping[str, int], total: int, key: Callable[[T], str] = str) -> Sequence[T]:
    """`ranked` (invokers in the order of `order`, their ids by `key`), with those that hold
    their bound of calls in flight or more moved behind the others, each group in its order.
    `load`: calls in flight per invoker id, `total` their sum; the bound counts the call being
    placed. Not a refusal: an invoker over its bound is still asked when those before it refuse."""
    if total < LOAD_FLOOR:
        return ranked  # the common case, and the warm path: nobody can be over the bound
    bound = max(LOAD_FLOOR, math.ceil(LOAD_FACTOR * (total + 1) / len(ranked)))
    under: list[T] = []
    over: list[T] = []
    for node in ranked:
        (over if load.get(key(node), 0) >= bound else under).append(node)
    return under + over if over else ranked
