"""Which node keeps which resident instances (a version's `resident`: instances kept warm at all
times, never reaped).

Embedded (`LocalResidents`): the one node keeps all of every active version's residents,
started when the node starts and at each activation, awaited (a deploy answers once they are
up), as the engine always did.

Cluster (`PlacedResidents`, on every node that runs functions): a version's N residents are
shared among the live function nodes of the registry. Each node keeps its share
(`frazil.cluster.placement.resident_share`), computed from the registry by every node alike, so
the nodes agree without talking to each other: the shares add up to N. A pass reads the active
versions with residents (PostgreSQL) and the live nodes (the registry), and sets this node's
count of each version (`InstancePool.ensure_resident` starts the missing, stops the extra). A
pass runs:
- when the set of live function nodes changed: checked every `heartbeat_s`, and at once when
  the registry reports a change (its `on_change`, where it has one);
- when a version was activated or a function deleted, here or anywhere (`changed()`, from
  frazil.cluster.changes);
- and every FULL_PASS_S regardless: an announcement is delivered at most once, and a resident
  that failed to start is tried again.

So when an invoker dies, its entry expires after `node_ttl_s` and the survivors start their
larger shares within `heartbeat_s` more; when one joins, the others stop their extra idle
residents while it starts its share. Each node acts on its own view of the registry, so for a
moment the total may be above or below N; it is N again once the views agree.

Error policy: a pass that fails (PostgreSQL or NATS away) is logged once per outage and tried
again at the next check; the node keeps the residents it has meanwhile.
"""
from __future__ import annotations

import asyncio
import logging
import time

from frazil.background import BackgroundLoop, FailureLog
from frazil.cluster.interfaces import NodeRegistry
from frazil.cluster.placement import resident_share
from frazil.pool.pool import InstancePool
from frazil.store.functions import FunctionStore
from frazil.store.models import FunctionVersion
from frazil.wiring import runs_functions

log = logging.getLogger(__name__)

# Seconds between two passes that re-read the versions with residents even if nothing was heard.
FULL_PASS_S = 15.0


class LocalResidents:
    """The embedded node keeps every resident itself."""

    def __init__(self, functions: FunctionStore, pool: InstancePool):
        self.functions = functions
        self.pool = pool

    async def start(self) -> None:
        for version in await self.functions.with_residents():
            await self.pool.ensure_resident(version)

    async def activated(self, version: FunctionVersion) -> None:
        if version.resident:
            await self.pool.ensure_resident(version)

    def changed(self) -> None:
        pass  # nobody else activates anything

    async def close(self) -> None:
        pass


class NoResidents:
    """A gateway holds no instances."""

    async def start(self) -> None:
        pass

    async def activated(self, version: FunctionVersion) -> None:
        pass

    def changed(self) -> None:
        pass

    async def close(self) -> None:
        pass


class PlacedResidents(BackgroundLoop):
    """This cluster node's share of every version's residents, kept up to date (module docstring)."""

    task_name = "resident-placement"

    def __init__(self, node_id: str, registry: NodeRegistry, functions: FunctionStore, pool: InstancePool, *,
                 check_s: float, full_pass_s: float = FULL_PASS_S):
        self.node_id = node_id
        self.registry = registry
        self.functions = functions
        self.pool = pool
        self.check_s = check_s
        self.full_pass_s = full_pass_s
        self._wake = asyncio.Event()
        self._nodes: frozenset[str] | None = None  # the live function nodes of the last pass
        self._versions: list[FunctionVersion] = []  # the active versions with residents, as last read
        self._versions_stale = True
        self._next_full = 0.0  # monotonic
        # The versions this node was given a count of at the last pass: one that is no longer
        # active (or no longer has residents) is brought to none here.
        self._placed: dict[tuple[str, int], FunctionVersion] = {}

    async def start(self) -> None:
        on_change = getattr(self.registry, "on_change", None)  # a watching registry tells at once
        if on_change is not None:
            on_change(self._wake.set)
        super().start()

    async def activated(self, version: FunctionVersion) -> None:
        self.changed()  # in the background: a share here may be none

    def changed(self) -> None:
        """A version was activated or a function deleted: read the versions again, now."""
        self._versions_stale = True
        self._wake.set()

    async def place_once(self) -> bool:
        """One pass: answers whether anything was (re)placed (False: nothing changed)."""
        nodes = frozenset(n.id for n in await self.registry.nodes() if runs_functions(n.role))
        if self.node_id not in nodes:
            # This node does not see itself: its heartbeats do not get through (NATS away) or
            # have not yet. Its view says nothing about the others then: keep the shares it has
            # rather than stop every resident (the error policy above).
            return False
        now = time.monotonic()
        full = self._versions_stale or now >= self._next_full
        if nodes == self._nodes and not full:
            return False
        if full:
            self._versions_stale = False  # first: a change heard during the read marks it again
            self._versions = await self.functions.with_residents()
            self._next_full = now + self.full_pass_s
        self._nodes = nodes
        wanted = {version.key: version for version in self._versions}
        for key, version in self._placed.items():
            if key not in wanted:
                await self.pool.ensure_resident(version, 0)
        self._placed = wanted
        for version in wanted.values():
            await self.pool.ensure_resident(version, resident_share(nodes, version.key, version.resident, self.node_id))
        return True

    async def _run(self) -> None:
        placing = FailureLog(log, "placing resident instances", "trying again")
        while True:
            self._wake.clear()
            try:
                await self.place_once()
                placing.worked()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again at the next check (error policy above)
                self._versions_stale = True  # the next pass is a whole one, whatever this one did
                placing.failed(exc)
            try:
                await asyncio.wait_for(self._wake.wait(), self.check_s)
            except asyncio.TimeoutError:
                pass
