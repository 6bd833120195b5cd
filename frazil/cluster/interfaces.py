"""The small interfaces a node is built from. Each has an embedded implementation (today's
single-process code) and, where the foundation has one, a cluster implementation;
`frazil.wiring.wire()` picks them from the settings, in one place.

| interface      | embedded                                | cluster                                  |
|----------------|-----------------------------------------|------------------------------------------|
| SharedBlobs    | LocalBlobs (the data dir's blob folder) | PostgresBlobs (PostgreSQL, cached here)  |
| LayerSource    | LocalLayers (built here, flocked)       | SharedLayers (built once, advisory lock) |
| NodeRegistry   | LocalRegistry (this node alone)         | NatsRegistry (KV bucket with a TTL)      |
| SyncRouter     | frazil.scheduler.invoker.Invoker        | GatewayInvoker + NatsRouter (request/reply to an invoker) |
| AsyncQueue     | Dispatcher (the invocations table)      | JetStreamQueue + JetStreamConsumer       |
| SlotAdmission  | frazil.scheduler.admission.Admission    | ClusterAdmission (leased from PostgreSQL)|
| ResidentKeeper | LocalResidents (all of them here)       | PlacedResidents (this node's share)      |

The embedded implementations are the engine as it is, not rewritten behind these names.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from frazil.settings import Role


# --- blobs and layers -------------------------------------------------------------------------

class SharedBlobs(Protocol):
    """Content-addressed blobs (code bundles, layer tarballs), keyed by their sha256 (hex).

    Invariants: a digest names exactly one content (every read is checked against it); a blob
    once stored is never changed; `local_path` answers only complete, verified files."""

    async def put(self, data: bytes) -> str:
        """Store `data`; its digest."""

    async def put_file(self, path: Path) -> str:
        """Store the file at `path`, streamed (never held whole in memory); its digest."""

    async def local_path(self, digest: str) -> Path:
        """A local file holding the blob, fetched into this node's cache first if needed.
        Raises BlobMissing when no store has it, BlobCorrupt when what arrived does not hash to
        `digest` (nothing is cached then)."""

    async def exists(self, digest: str) -> bool:
        """Whether the shared store has the blob (this node's cache may not)."""


class LayerSource(Protocol):
    """Dependency layers: a directory per key under `<data-dir>/layers`, checked against its
    recorded tree digest before use (frazil.build.layers, frazil.build.integrity)."""

    async def ensure(self, runtime: str, code_dir: Path, log: Callable[[str], None]) -> Path | None:
        """At deploy: the layer for the project in `code_dir`, built if nobody has built it;
        None when the project declares no dependencies. Raises BuildFailed."""

    async def local(self, key: str) -> Path:
        """At a cold start: the layer `key` in this node's data dir, fetched if it is missing,
        verified. Raises LayerTampered (a SandboxError) when it cannot be had intact."""


# --- nodes ------------------------------------------------------------------------------------

@dataclass
class NodeInfo:
    """One node as `GET /v1/cluster` shows it. `instances` and `running` are the node's own
    counts (its pool; its tier slots), zero on a gateway."""

    id: str
    role: Role
    address: str
    started_at: float
    last_seen: float
    instances: dict[str, int] = field(default_factory=lambda: {"idle": 0, "busy": 0})
    running: dict[str, int] = field(default_factory=dict)  # tier MB (as text) -> invocations
    # Invokers: the versions [function, number] of which they hold an idle instance, most
    # recently used first (at most WARM_LISTED); gateways route there first (frazil.cluster.placement).
    warm: list[tuple[str, int]] = field(default_factory=list)

    def to_json(self) -> dict:
        """The registry entry (what other nodes read)."""
        data = asdict(self)
        data["role"] = self.role.value
        return data

    def public_json(self) -> dict:
        """What `GET /v1/cluster` shows (SPEC "Deployment shapes"): the entry without the
        routing detail."""
        data = self.to_json()
        del data["warm"]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "NodeInfo":
        return cls(id=str(data["id"]), role=Role(data["role"]), address=str(data["address"]),
                   started_at=float(data["started_at"]), last_seen=float(data["last_seen"]),
                   instances={k: int(v) for k, v in dict(data.get("instances") or {}).items()},
                   running={str(k): int(v) for k, v in dict(data.get("running") or {}).items()},
                   warm=[(str(f), int(n)) for f, n in list(data.get("warm") or [])])


class NodeRegistry(Protocol):
    """Who is in the cluster. A node registers at start and heartbeats while it lives; a node
    that stops heartbeating (killed, partitioned) drops out by itself after a TTL: nobody has
    to notice its death for the list to be right."""

    async def start(self) -> None:
        """Register this node and start heartbeating."""

    async def nodes(self) -> list[NodeInfo]:
        """The live nodes, this one included, ordered by id."""

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` (no arguments) whenever the list may have changed: a node joined,
        heartbeat with new counts, or left cleanly. (A node that died drops out of `nodes()`
        by its TTL without a call.)"""

    async def close(self) -> None:
        """Stop heartbeating and deregister (a clean stop drops out at once)."""


# A node's current counts, read at each heartbeat: (instances, running per tier, warm versions).
StatusReader = Callable[[], tuple[dict[str, int], dict[str, int], list[tuple[str, int]]]]

# The most warm versions an invoker lists in its heartbeat (its entry stays a few KB; a version
# left out is still found warm by the rendezvous order, which sent its cold start there).
WARM_LISTED = 256


# --- named for the next pieces (their embedded implementations are the engine's) ----------------

class SyncRouter(Protocol):
    """Runs one sync invocation somewhere: embedded, in this process's pool (Invoker); in a
    cluster gateway, on an invoker chosen over NATS, warm instances first (GatewayInvoker,
    frazil.cluster.gateway, with frazil.cluster.router)."""

    async def active_version(self, name: str): ...

    async def invoke_sync(self, version, event_json: bytes, record=None, *, timeout_s=None, slot_wait_s=None): ...


class AsyncQueue(Protocol):
    """The durable async queue: embedded, the invocations table polled by the Dispatcher; in a
    cluster, a JetStream work-queue stream named after the cluster (frazil.cluster.queue),
    which invokers consume (frazil.cluster.consumer)."""

    store: object  # the InvocationStore its records are in

    async def enqueue(self, record) -> None:
        """Accept a new async invocation (a queued InvocationRecord): once this returns it is
        durable and will run; raises ServiceUnavailable, with nothing kept, when it cannot be."""

    def committed(self, records) -> None:
        """Queued records inserted and committed by another transaction (a table change's,
        frazil.scheduler.table_events): accepted already, to be run."""


class SlotAdmission(Protocol):
    """Tier limits: embedded, counters in this process (Admission); in a cluster, slots leased
    to nodes in blocks from PostgreSQL (frazil.cluster.slots.ClusterAdmission, whose docstring
    says who owns a slot at every moment and how a dead node's slots come back).

    `slots(mb)` is a TierSlots (try_take/take/give/waiting/running/limit, and `in_force`:
    checked just before an invocation starts); `tiers` maps every tier to its slots;
    `on_lapse(mb)` is called when running invocations of a tier must stop now."""

    tiers: dict

    on_lapse: Callable[[int], None] | None

    def slots(self, memory_mb: int): ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class ResidentKeeper(Protocol):
    """Which resident instances this node keeps (frazil.cluster.residents): embedded, every
    active version's; in a cluster, each function node its share of each version's, recomputed
    when nodes join or leave; a gateway none."""

    async def start(self) -> None:
        """Start this node's residents (the node is registered and serving)."""

    async def activated(self, version) -> None:
        """`version` was activated on this node."""

    def changed(self) -> None:
        """A version was activated or a function deleted (here or on another node)."""

    async def close(self) -> None:
        """Start no more residents (the pool, closed next, stops those there are)."""
