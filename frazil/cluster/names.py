"""Every name the cluster puts on NATS or in PostgreSQL locks (STYLE habit 4).

All of a cluster's NATS objects carry its name (`FRAZIL_CLUSTER`), so clusters sharing a NATS
server never see each other. NATS bucket and stream names allow only letters, digits, `-` and
`_`, which is why the cluster name is validated as such a token (frazil.settings).
"""
from __future__ import annotations

import hashlib
import re

PREFIX = "frazil"


def nodes_bucket(cluster: str) -> str:
    """The KV bucket of live nodes: key = node id, value = NodeInfo JSON, expiring by TTL."""
    return f"{PREFIX}_{cluster}_nodes"


def async_stream(cluster: str) -> str:
    """The async queue: a work-queue stream of invocation ids (frazil.cluster.queue)."""
    return f"{PREFIX}_{cluster}_async"


def async_subject(cluster: str, invocation_id: str = "*") -> str:
    """The subject an async invocation's message is published on: one per invocation, so that
    the stream itself tells whether an invocation has a message (frazil.cluster.republisher);
    with the default, the wildcard of them all (the stream's and its consumer's)."""
    return f"{PREFIX}.{cluster}.async.{invocation_id}"


def async_consumer(cluster: str) -> str:
    """The durable pull consumer every invoker of the cluster fetches async invocations from."""
    return f"{PREFIX}_{cluster}_invokers"


def invoke_subject(cluster: str, node_id: str) -> str:
    """The subject an invoker takes sync invocations on (frazil.cluster.invoker_service): one
    per node, so a gateway chooses the invoker. A node id may hold characters a subject token
    may not (a host name's dots): they become `_`, and a hash of the id keeps two ids that
    differ only there apart."""
    token = re.sub(r"[^A-Za-z0-9_-]", "_", node_id)
    return f"{PREFIX}.{cluster}.invoke.{token}-{hashlib.sha256(node_id.encode()).hexdigest()[:8]}"


def changes_subject(cluster: str) -> str:
    """Where a node announces that a function's active version changed or the function was
    deleted; every node listens (frazil.cluster.changes)."""
    return f"{PREFIX}.{cluster}.functions.changed"


def all_buckets(cluster: str) -> list[str]:
    """Every KV bucket of a cluster (tests and scripts/cluster.sh delete them after)."""
    return [nodes_bucket(cluster)]


def all_streams(cluster: str) -> list[str]:
    """Every stream of a cluster besides its buckets'."""
    return [async_stream(cluster)]


# PostgreSQL advisory locks are keyed by one bigint; each use gets its own namespace in the
# top bits so that a layer's lock can never collide with the migration lock
# (frazil.store.migrate.LOCK_KEY, which is below 2**48).
_LAYER_LOCK_SPACE = 0x4C  # "L"


def layer_lock_key(layer_key: str) -> int:
    """The advisory lock held while a layer is built for the cluster (frazil.cluster.layers)."""
    low = int.from_bytes(hashlib.sha256(layer_key.encode()).digest()[:6], "big")
    return (_LAYER_LOCK_SPACE << 48) | low


_SLOT_LOCK_SPACE = 0x53  # "S"
# The advisory transaction lock of a republishing pass (frazil.cluster.republisher): one node at a time.
REPUBLISH_LOCK_KEY = 0x52 << 48  # "R"


def slot_lock_key(memory_mb: int) -> int:
    """The advisory transaction lock under which a tier's slot leases change
    (frazil.cluster.slots): one per tier, so that two tiers never wait on each other."""
    return (_SLOT_LOCK_SPACE << 48) | memory_mb


# The PostgreSQL NOTIFY channel on which nodes tell each other that they want slots of a tier,
# or gave some back (frazil.cluster.slots). A database serves one cluster: no cluster name in it.
SLOTS_CHANNEL = "frazil_slots"
