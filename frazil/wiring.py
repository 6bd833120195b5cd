"""Which implementation of each node interface this node uses: decided here, from the
settings, and nowhere else (frazil.cluster.interfaces lists the interfaces).

- embedded (no `FRAZIL_NATS_URL`): blobs and layers in the data dir, the registry is this
  node alone; the platform is exactly the single-process engine;
- cluster: blobs and layers shared in PostgreSQL (cached in the data dir), the registry a NATS
  KV bucket, the tier slots of a node that runs functions leased from PostgreSQL
  (frazil.cluster.slots); a gateway runs sync invocations on invokers over NATS (frazil.cluster.gateway,
  frazil.cluster.router), which take them on their own subject (frazil.cluster.invoker_service);
  activations and deletions are announced to every node (frazil.cluster.changes). The async queue
  is a JetStream stream (frazil.cluster.queue) that every node publishes to and invokers and `all`
  nodes consume (frazil.cluster.consumer).

Which parts of the engine run on a node depends on its role (`runs_api`, `runs_functions`,
`runs_async_queue`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from frazil.cluster import config
from frazil.cluster.blobs import LocalBlobs, PostgresBlobs
from frazil.cluster.interfaces import LayerSource, NodeInfo, NodeRegistry, SharedBlobs, StatusReader
from frazil.cluster.layers import LocalLayers, SharedLayers
from frazil.cluster.registry import LocalRegistry, NatsRegistry
from frazil.errors import reason_of
from frazil.scheduler.admission import Admission
from frazil.scheduler.dispatcher import Dispatcher
from frazil.scheduler.invoker import Invoker
from frazil.settings import Role, Settings
from frazil.store.blobs import BlobStore

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # cluster modules are imported only by cluster nodes
    from frazil.cluster.changes import FunctionChanges
    from frazil.cluster.invoker_service import InvokerService
    from frazil.cluster.router import NatsRouter


def check(settings: Settings) -> None:
    """Raise BadSetting unless the settings make a node that can run (frazil.cluster.config)."""
    config.check(settings)


def runs_api(role: Role) -> bool:
    """Serves the HTTP API, the console and the data tables; deploys (and builds) there."""
    return role in (Role.ALL, Role.GATEWAY)


def runs_functions(role: Role) -> bool:
    """Holds sandboxes and instances."""
    return role in (Role.ALL, Role.INVOKER)


def runs_async_queue(settings: Settings) -> bool:
    """Takes async invocations from the queue (and fires schedules): embedded, the one node
    (the database queue); in a cluster, every node with sandboxes (the JetStream consumer)."""
    return runs_functions(settings.role) if settings.clustered else settings.role is Role.ALL


# How long a node may serve a function's active version after another node deployed a new
# one (frazil.store.catalog). The embedded node is the only deployer: its cache never expires.
CLUSTER_CATALOG_TTL_S = 2.0


def catalog_ttl(settings: Settings) -> float | None:
    return CLUSTER_CATALOG_TTL_S if settings.clustered else None


def admission(settings: Settings, engine: AsyncEngine, node: str):
    """The tier slots (a SlotAdmission): this process's counters, or, on a cluster node that
    runs functions, slots leased from the cluster so that the limits hold for all nodes at once."""
    if settings.clustered and runs_functions(settings.role):
        from frazil.cluster.slots import ClusterAdmission

        return ClusterAdmission.from_settings(settings, engine, node)
    return Admission(settings)


def residents(settings: Settings, registry: NodeRegistry, functions, pool, node_id: str):
    """Who keeps this node's resident instances (frazil.cluster.residents): embedded, all of
    them here; a cluster node that runs functions, its share; a gateway, none."""
    from frazil.cluster.residents import LocalResidents, NoResidents, PlacedResidents

    if not runs_functions(settings.role):
        return NoResidents()
    if not settings.clustered:
        return LocalResidents(functions, pool)
    return PlacedResidents(node_id, registry, functions, pool, check_s=settings.heartbeat_s)


def make_invoker(wired: "Wiring", *args, **kwargs) -> Invoker:
    """This node's Invoker (arguments as Invoker's): a gateway's runs sync invocations on
    invokers (frazil.cluster.gateway), every other node's runs them here."""
    if wired.router is None:
        return Invoker(*args, **kwargs)
    from frazil.cluster.gateway import GatewayInvoker

    invoker = GatewayInvoker(*args, **kwargs)
    invoker.router = wired.router
    return invoker


@dataclass
class Wiring:
    blobs: SharedBlobs
    layers: LayerSource
    registry: NodeRegistry
    nats: object | None = None  # the node's NATS connection (cluster mode), closed last
    router: "NatsRouter | None" = None  # a gateway's
    changes: "FunctionChanges | None" = None  # cluster mode
    service: "InvokerService | None" = None  # a cluster node that runs functions; made at start

    async def start(self, settings: Settings, invoker: Invoker, node_id: str,
                    apply_change: Callable[[str, int | None], None]) -> None:
        """Register the node and start what it serves. Order: an invoker listens on its
        subject before it is listed in the registry (a gateway that finds it there finds it
        listening), and a gateway reads the registry once it exists."""
        if self.changes is not None:
            await self.changes.start(apply_change)
        if self.nats is not None and runs_functions(settings.role):
            from frazil.cluster.invoker_service import InvokerService

            self.service = InvokerService(self.nats, settings, invoker, node_id, beat=self.registry.beat)
            await self.service.start()
        await self.registry.start()
        if self.router is not None:
            await self.router.start()

    async def announce(self, function: str, keep: int | None) -> None:
        """Tell the other nodes that `function`'s active version is now `keep` (None: deleted)."""
        if self.changes is not None:
            await self.changes.announce(function, keep)

    async def close(self) -> None:
        # The invoker side first: it stops taking requests and lets the running ones answer
        # while the node is still listed (gateways waiting on it would otherwise give up).
        for part in (self.service, self.router, self.changes):
            if part is not None:
                await part.close()
        await self.registry.close()
        if self.nats is not None:
            try:
                await self.nats.close()
            except Exception as exc:  # NATS away: what it would flush is redone by redeliveries
                log.warning("closing the NATS connection failed (%s: %s)", type(exc).__name__, exc)


async def async_queue(settings: Settings, wired: Wiring, dispatcher: Dispatcher):
    """The node's AsyncQueue (where Entry puts async invocations) and, on a node that takes
    them in a cluster, the JetStream consumer to start (None: embedded, the dispatcher takes
    them; or a gateway, which takes none)."""
    if not settings.clustered:
        return dispatcher, None
    from frazil.cluster.consumer import JetStreamConsumer
    from frazil.cluster.nats import shown
    from frazil.cluster.queue import JetStreamQueue, ensure_stream
    from frazil.cluster.republisher import Republisher

    try:
        await ensure_stream(wired.nats, settings)
    except Exception as exc:
        raise config.ServiceUnreachable("NATS JetStream", shown(settings), reason_of(exc)) from None
    queue = JetStreamQueue(wired.nats, settings, dispatcher.store)
    if not runs_async_queue(settings):
        return queue, None
    republisher = Republisher(wired.nats, dispatcher.store.engine, dispatcher.store, queue)
    return queue, JetStreamConsumer(settings, wired.nats, dispatcher.store, dispatcher.catalog, dispatcher.admission,
                                    dispatcher.attempts, republisher)


async def wire(settings: Settings, engine: AsyncEngine, cache: BlobStore, me: NodeInfo,
               status: StatusReader, metrics=None) -> Wiring:
    """The node's implementations. In cluster mode this connects to NATS (ServiceUnreachable
    if it cannot); the caller starts them (`Wiring.start`) once the node can answer for itself."""
    if not settings.clustered:
        return Wiring(LocalBlobs(cache), LocalLayers(settings), LocalRegistry(me, status))
    from frazil.cluster.changes import FunctionChanges
    from frazil.cluster.nats import connect

    nc = await connect(settings)
    blobs = PostgresBlobs(engine, cache)
    registry = NatsRegistry(nc, settings, me, status)
    router = None
    if settings.role is Role.GATEWAY:
        from frazil.cluster.router import NatsRouter

        router = NatsRouter(nc, settings, registry, metrics)
    return Wiring(blobs, SharedLayers(settings, engine, blobs), registry, nc, router=router,
                  changes=FunctionChanges(nc, settings, me.id))
