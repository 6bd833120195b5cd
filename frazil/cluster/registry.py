"""Nodes and their heartbeats.

Embedded: `LocalRegistry`, the one node. Cluster: `NatsRegistry`, a NATS KV bucket named after
the cluster (`frazil_<cluster>_nodes`) whose entries expire after `node_ttl_s`:

- each node owns exactly one key, its id, and is its only writer: it puts its NodeInfo at start
  and again every `heartbeat_s`, with its current counts;
- NATS expires an entry `node_ttl_s` after its last put (the bucket's TTL), so a node that dies
  without a word (SIGKILL, power, partition) drops out by itself; nobody has to notice it;
- a node that stops cleanly deletes its key, and drops out at once;
- a node whose heartbeats fail (NATS down) keeps trying; it is absent from the list meanwhile
  and comes back with its next successful put, under the same id and started_at.

Every node watches the bucket (a KV watch: NATS pushes each put and delete as it happens), so
its list is local and a join or a clean leave is seen at once (`on_change` tells who asked).
The watch does not see an entry expire (NATS removes it without a word), so the list keeps the
TTL itself: an entry not put again within `node_ttl_s` of its last put is left out, and that
is the death detector, as the bucket's TTL is for readers of the bucket.

The counts in an entry are at most `heartbeat_s` old; the router that reads them allows for that.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from datetime import datetime, timezone
from typing import Callable

import nats.errors
from nats.aio.client import Client
from nats.js.errors import BadRequestError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from frazil.background import FailureLog, cancel_and_wait
from frazil.cluster.interfaces import NodeInfo, StatusReader
from frazil.cluster.names import nodes_bucket
from frazil.settings import Settings

log = logging.getLogger(__name__)

WATCH_RETRY_S = 1.0  # a watch that failed (NATS away) is made again after this


def node_address(settings: Settings) -> str:
    """How other nodes and operators reach this node's HTTP port."""
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


class LocalRegistry:
    """The embedded mode's registry: this node alone, its counts read when asked."""

    def __init__(self, me: NodeInfo, status: StatusReader):
        self.me = me
        self.status = status

    async def start(self) -> None:
        pass

    async def nodes(self) -> list[NodeInfo]:
        self.me.instances, self.me.running, self.me.warm = self.status()
        self.me.last_seen = time.time()
        return [self.me]

    def on_change(self, listener: Callable[[], None]) -> None:
        pass  # this node alone: nothing ever joins or leaves

    async def close(self) -> None:
        pass


class NatsRegistry:
    """This node's entry in the cluster's node bucket, kept fresh by a heartbeat task."""

    def __init__(self, nc: Client, settings: Settings, me: NodeInfo, status: StatusReader):
        self.nc = nc
        self.settings = settings
        self.me = me
        self.status = status
        self.bucket = nodes_bucket(settings.cluster)
        self.kv = None
        self._task: asyncio.Task | None = None
        self._watching: asyncio.Task | None = None
        self.watcher = None  # the watch now (a nats-py KeyWatcher)
        # key -> (when it expires here, monotonic; its entry), as the watch last told it
        self._entries: dict[str, tuple[float, NodeInfo]] = {}
        self._listeners: list[Callable[[], None]] = []
        self._last_put = float("-inf")  # monotonic time of this node's last successful put

    async def start(self) -> None:
        js = self.nc.jetstream()
        try:
            self.kv = await js.create_key_value(bucket=self.bucket, ttl=self.settings.node_ttl_s, history=1)
        except BadRequestError:
            # The bucket exists with another configuration (a TTL from another release): use it.
            self.kv = await js.key_value(self.bucket)
        await self.beat()  # registered before the node serves anything
        watcher = await self._watch()  # the list as it is now, this node in it
        self._watching = asyncio.create_task(self._watch_forever(watcher), name="cluster-registry-watch")
        self._task = asyncio.create_task(self._heartbeat_forever(), name="cluster-heartbeat")

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` (no arguments, from the event loop) whenever an entry arrives or goes:
        a join, a heartbeat with new counts, a clean leave."""
        self._listeners.append(listener)

    async def beat(self) -> None:
        """Put this node's entry now, with its current counts."""
        self.me.instances, self.me.running, self.me.warm = self.status()
        self.me.last_seen = time.time()
        await self.kv.put(self.me.id, json.dumps(self.me.to_json()).encode())
        self._last_put = time.monotonic()

    async def _heartbeat_forever(self) -> None:
        # Error policy: a failed beat is logged (once per outage) and retried at the next tick;
        # the node never stops beating while it lives, and NATS expires its entry meanwhile.
        failing = False
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self.beat()
                if failing:
                    log.warning("heartbeats to NATS work again; node %s is back in the registry", self.me.id)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("heartbeat to NATS failed (%s: %s); node %s drops out of the registry "
                                "until it is back", type(exc).__name__, exc, self.me.id)
                failing = True

    async def nodes(self) -> list[NodeInfo]:
        now = time.monotonic()
        for key in [key for key, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]  # not put again within the TTL: NATS has expired it too
        return sorted((info for _, info in self._entries.values()), key=lambda n: n.id)

    # --- the watch ------------------------------------------------------------------------------

    async def _watch(self) -> "KeyValue.KeyWatcher":
        """A new watch of the bucket, after the entries there are now have arrived (NATS sends
        them first; the end of them is marked by None), bounded by the TTL."""
        watcher = self.watcher = await self.kv.watchall()
        try:
            deadline = time.monotonic() + self.settings.node_ttl_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    entry = await watcher.updates(timeout=left)
                except nats.errors.TimeoutError:
                    break
                if entry is None:
                    break
                self._apply(entry)
        except BaseException:
            await _stop(watcher)  # its caller never saw it: nobody else would stop it
            raise
        return watcher

    async def _watch_forever(self, watcher) -> None:
        # Error policy: a watch that fails is made again after WATCH_RETRY_S, logged once per
        # outage. A watch can also go quiet without failing (its ephemeral consumer lost with a
        # NATS restart); this node's own puts come back through a live watch, so a watch that
        # has delivered nothing for a TTL although this node put its entry meanwhile is made
        # again. A new watch sends every entry (and the delete markers of clean leaves) again,
        # so nothing missed in between is kept wrong; what expired meanwhile the TTL drops here.
        # That is why no periodic re-read of the bucket is needed beside the watch.
        watching = FailureLog(log, "watching the node registry", "watching again")
        while True:
            try:
                if watcher is None:
                    watcher = await self._watch()
                    self._changed()
                watching.worked()
                while True:
                    try:
                        entry = await watcher.updates(timeout=self.settings.node_ttl_s)
                    except nats.errors.TimeoutError:
                        if time.monotonic() - self._last_put < self.settings.node_ttl_s:
                            raise RuntimeError("the watch went quiet although this node's heartbeats get "
                                               "through") from None
                        continue  # nothing put anywhere (NATS away): nothing to see
                    if entry is not None:
                        self._apply(entry)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - made again; the TTL keeps the list honest meanwhile
                watching.failed(exc)
            finally:
                if watcher is not None:
                    await _stop(watcher)
                watcher = None
            await asyncio.sleep(WATCH_RETRY_S)

    def _apply(self, entry) -> None:
        """One put or delete from the watch."""
        if entry.operation in (KV_DEL, KV_PURGE):
            if self._entries.pop(entry.key, None) is not None:
                self._changed()
            return
        try:
            info = NodeInfo.from_json(json.loads(entry.value))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed entry %r in %s", entry.key, self.bucket)
            return
        ttl = self.settings.node_ttl_s
        # How long ago NATS stored it (the first entries of a watch may be old), by the NATS
        # server's clock against ours, so at most a heartbeat is believed: a clock ahead of the
        # server's by a TTL would otherwise expire every entry on arrival; a dead node's old
        # entry then lingers at most TTL - heartbeat longer.
        age = 0.0 if entry.created is None else (datetime.now(timezone.utc) - entry.created).total_seconds()
        self._entries[entry.key] = (time.monotonic() + ttl - min(max(age, 0.0), self.settings.heartbeat_s), info)
        self._changed()

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # noqa: BLE001 - one listener's bug must not stop the watch
                log.exception("a registry listener failed")

    async def close(self) -> None:
        await cancel_and_wait(*(t for t in (self._task, self._watching) if t is not None))
        if self.kv is not None and self.nc.is_connected:
            try:
                await self.kv.delete(self.me.id)
            except Exception as exc:  # NATS gone: the TTL removes the entry instead
                log.warning("could not deregister node %s (%s); its entry expires by itself", self.me.id, exc)


async def _stop(watcher) -> None:
    try:
        await watcher.stop()
    except Exception:  # noqa: BLE001 - NATS away: the subscription went with the connection
        pass
