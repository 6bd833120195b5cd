"""The running platform: builds every part from the settings and starts/stops them in order.

Which parts run depends on the node's role (frazil.wiring): `all` runs everything (the
embedded default), a `gateway` the API side (no sandboxes are started there), an `invoker`
the sandboxes and pool (it serves only /healthz and /metrics). The implementations of the
node interfaces (blobs, layers, registry) come from `frazil.wiring.wire()`.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import time
from pathlib import Path

from frazil import wiring
from frazil.cluster.interfaces import WARM_LISTED, NodeInfo
from frazil.cluster.registry import node_address
from frazil.console.stats import StatsRing, full_snapshot

from frazil.data.ratelimit import RateLimiter
from frazil.data.service import DataService
from frazil.deploy.deployer import Deployer
from frazil.deploy.versions import Versions
from frazil.metrics import Metrics
from frazil.outage import HealthMonitor
from frazil.pool.pool import InstancePool, PoolEvent
from frazil.sandbox.base import Sandbox
from frazil.sandbox.select import make_sandbox
from frazil.sdk.host import SdkHost
from frazil.scheduler.dispatcher import Dispatcher
from frazil.scheduler.entry import Entry
from frazil.scheduler.invoker import lapsed_why
from frazil.scheduler.schedules import Schedules
from frazil.scheduler.table_events import TableEvents
from frazil.settings import ADMIN_KEY_FILE, Settings
from frazil.store.blobs import BlobStore
from frazil.store.catalog import FunctionCatalog
from frazil.store.datadir import BLOBS_DIR, secure_data_dir
from frazil.store.db import open_engine
from frazil.store.functions import FunctionStore
from frazil.store.invocations import InvocationStore
from frazil.store.record_journal import RecordJournal
from frazil.store.record_writer import RecordWriter
from frazil.store.retention import Pruner, Retention

log = logging.getLogger(__name__)


def load_admin_key(settings: Settings) -> str:
    """FRAZIL_ADMIN_KEY when set; else the key kept in <data-dir>/admin.key (made at first start)."""
    if settings.admin_key:
        return settings.admin_key
    path: Path = settings.data_dir / ADMIN_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    # Said once, at the first start: where the key that the console and the CLI need is.
    log.warning("generated the admin key into %s (mode 0600): the console asks for it, and the CLI "
                "reads it from there or from FRAZIL_TOKEN", path.resolve())
    return key


def node_id(settings: Settings) -> str:
    """This node's name on records and in /healthz: the host's name and a hash of the data
    dir, so it stays the same across restarts and differs between servers on one host."""
    digest = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


class Platform:
    def __init__(self, settings: Settings, *, sandbox: Sandbox | None = None, inspect_handler=None):
        """`sandbox`: one to use instead of the configured one (in-process tests give a fake,
        and an `inspect_handler` that runs no code either: frazil.build.handlers)."""
        self._inspect_handler = inspect_handler
        wiring.check(settings)  # BadSetting: a configuration that cannot run refuses at once
        self.settings = settings
        self.role = settings.role
        # Stable across restarts (one server per data dir): records' `node`, /healthz, the
        # registry, and the async dispatcher's owner mark on the records it claims.
        self.node_id = node_id(settings)
        self.started_at = time.time()
        # The sandbox is made (and probed) first: a machine that cannot isolate fails at once.
        self.sandbox = sandbox if sandbox is not None else make_sandbox(settings)
        secure_data_dir(settings.data_dir, private_files=(ADMIN_KEY_FILE,),
                        sqlite_path=None if settings.database_url else settings.sqlite_path)
        self.admin_key = load_admin_key(settings)
        self.metrics = Metrics()
        # Async invocations without the admin key, per client address (frazil.api.invoking).
        self.public_async = RateLimiter(settings.public_async_limit, settings.public_async_window_s)

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = await open_engine(s)
        self.functions = FunctionStore(self.engine)
        self.invocations = InvocationStore(self.engine)
        self.health = HealthMonitor(self.engine, s.data_dir)
        self.records = RecordWriter(self.invocations, on_outage=self.health.report,
                                    journal=RecordJournal(s.data_dir) if s.record_journal else None)
        self.records.recover()  # what a crash left journaled is pending (and readable) again
        self.pruner = Pruner(self.engine, self.invocations, Retention.from_settings(s),
                             interval_s=s.retention_interval_s)
        self.stats_ring = StatsRing(lambda: full_snapshot(self), interval_s=s.stats_interval_s)
        blob_cache = BlobStore(s.data_dir / BLOBS_DIR)
        swept = blob_cache.sweep_staging()  # before any deploy can start a put
        if swept:
            log.warning("removed %d unfinished blob staging files", swept)
        self.admission = wiring.admission(s, self.engine, self.node_id)
        me = NodeInfo(id=self.node_id, role=self.role, address=node_address(s), started_at=self.started_at,
                      last_seen=self.started_at)
        self.wiring = await wiring.wire(s, self.engine, blob_cache, me, self._status, self.metrics)
        self.blobs = self.wiring.blobs
        self.registry = self.wiring.registry
        self.catalog = FunctionCatalog(self.functions, ttl_s=wiring.catalog_ttl(s))
        self.deployer = Deployer(s, self.functions, self.blobs, self.catalog, self.wiring.layers,
                                 on_activated=self._activated,
                                 **({"inspect_handler": self._inspect_handler} if self._inspect_handler else {}))
        self.versions = Versions(self.functions, self.catalog, on_activated=self._activated)
        if wiring.runs_functions(self.role):
            await self.sandbox.start()
        self.sdk = SdkHost(self)
        self.pool = InstancePool(s, self.sandbox, code_dir=self.deployer.code_dir,
                                 layer_dirs=self.deployer.layer_dirs, sdk_handler=self.sdk.handle,
                                 egress=self.sdk.egress,
                                 on_event=self._instance_event)
        self.residents = wiring.residents(s, self.registry, self.functions, self.pool, self.node_id)
        self.invoker = wiring.make_invoker(self.wiring, s, self.catalog, self.pool, self.admission, self.records,
                                           self.metrics, node=self.node_id)
        self.dispatcher = Dispatcher(s, self.invocations, self.catalog, self.admission, self.invoker,
                                     owner=self.node_id)
        # The queue Entry puts async invocations in; `consumer`: the JetStream side that takes
        # them on a cluster node with sandboxes (embedded, the dispatcher does).
        self.queue, self.consumer = await wiring.async_queue(s, self.wiring, self.dispatcher)
        self.entry = Entry(s, self.invoker, self.queue)
        self.schedules = Schedules(self.functions, self.entry, self.engine, node=self.node_id)
        # Table triggers: every change of a record queues what it fires in its own transaction.
        self.table_events = TableEvents(self.functions, self.entry, max_event_bytes=s.max_payload_bytes,
                                        ttl_s=wiring.catalog_ttl(s))
        self.data = DataService(self.engine, s, changes=self.table_events)
        self.metrics.bind(self.admission, self.pool)
        self.admission.on_lapse = self._tier_lease_lapsed
        await self.admission.start()  # after the sandbox: a previous run's instances are gone
        # Registered (and an invoker listening) before this node takes any invocation.
        await self.wiring.start(s, self.invoker, self.node_id, self._apply_change)
        self.records.start()
        if wiring.runs_api(self.role):
            self.pruner.start()
            self.stats_ring.start()
        if wiring.runs_functions(self.role):
            self.pool.start()
        if wiring.runs_async_queue(s):
            if self.consumer is not None:
                self.consumer.start()
            else:
                await self._requeue_orphans()
                self.dispatcher.start()
            self.schedules.start()  # every such node: the tick claims make each tick fire once
        await self.residents.start()

    async def _requeue_orphans(self) -> None:
        """Embedded: put back in the queue every async invocation that was running when the
        platform stopped (this node was the only one, and it just started). A cluster needs no
        such pass: the broker redelivers a dead invoker's messages (frazil.cluster.consumer)."""
        requeued = await self.invocations.requeue_orphans()
        if requeued:
            log.warning("re-queued %d async invocations that were running when the platform stopped", requeued)

    def _status(self) -> tuple[dict[str, int], dict[str, int], list[tuple[str, int]]]:
        """This node's counts for the registry: its instances, its running invocations per
        tier, and the versions it holds warm (gateways route there first)."""
        instances = self.pool.counts() if hasattr(self, "pool") else {"idle": 0, "busy": 0}
        running = {str(mb): slots.running for mb, slots in sorted(self.admission.tiers.items())}
        warm = self.pool.warm_versions(WARM_LISTED) if hasattr(self, "pool") else []
        return instances, running, warm

    async def stop(self) -> None:
        await self.residents.close()  # before the pool goes: it starts no resident any more
        if self.consumer is not None:
            await self.consumer.close()
        if self.queue is not self.dispatcher:
            await self.queue.close()
        await self.wiring.close()  # deregistered first: nobody should count on this node any more
        await self.pruner.close()
        await self.stats_ring.close()
        await self.schedules.close()
        await self.dispatcher.stop()
        await self.pool.close()
        await self.admission.close()  # nothing runs here any more: every slot goes back
        await self.sdk.close()
        await self.sandbox.close()
        await self.records.close()
        await self.engine.dispose()

    async def _activated(self, version) -> None:
        self.table_events.invalidate()
        self.pool.retire(version.function, keep_version=version.number)
        await self.wiring.announce(version.function, version.number)
        await self.residents.activated(version)

    async def delete_function(self, name: str) -> bool:
        deleted = await self.functions.delete(name)
        self.catalog.invalidate(name)
        self.table_events.invalidate()
        self.pool.retire(name)
        await self.wiring.announce(name, None)
        self.residents.changed()
        return deleted

    def _apply_change(self, function: str, keep: int | None) -> None:
        """Another node activated version `keep` of `function` (None: deleted it)."""
        self.catalog.invalidate(function)
        self.pool.retire(function, keep_version=keep)
        self.residents.changed()

    def _tier_lease_lapsed(self, memory_mb: int) -> None:
        stopped = self.pool.stop_tier(memory_mb, lapsed_why(memory_mb))
        log.error("stopped %d invocations of %d MB functions: this node's lease on their tier slots lapsed",
                  stopped, memory_mb)

    def _instance_event(self, event: PoolEvent, instance) -> None:
        if event is PoolEvent.CREATED:
            self.metrics.sandbox_create.observe(instance.stats["create_ms"] / 1000)
            self.metrics.sandbox_creates.labels(instance.proc.stats.get("path", "exec")).inc()
        elif event is PoolEvent.DESTROYED:
            self.metrics.sandbox_destroy.observe(instance.stats["destroy_ms"] / 1000)
