"""Activation and deletion reach every node at once.

When a node activates a version of a function (deploy, rollback, settings change) or deletes
a function, it applies the change to itself and announces it on the cluster's changes subject
(frazil.cluster.names.changes_subject); every other node hears it and applies it too:
invokers retire the idle instances of the versions no longer active (`InstancePool.retire`),
and every node drops the function from its catalog cache, so its next call reads the new
active version. A message is `{"function", "keep": <the active number, or null when
deleted>, "origin": <node id>}`; a node ignores its own.

Core NATS delivers at most once: a node that misses an announcement (it was disconnected)
still serves the new version within the catalog's TTL (frazil.wiring.CLUSTER_CATALOG_TTL_S),
and its old idle instances leave with the keep-alive; the announcement makes that immediate.

Error policy: an announcement that cannot be published is logged (the deploy has happened
and stands); a malformed message is logged and ignored.
"""
from __future__ import annotations

import logging
from typing import Callable

import orjson

from frazil.cluster.names import changes_subject
from frazil.cluster.nats import unsubscribe
from frazil.settings import Settings

log = logging.getLogger(__name__)

# Applies a change on this node: (function, the version kept or None when deleted).
ApplyChange = Callable[[str, "int | None"], None]


class FunctionChanges:
    def __init__(self, nc, settings: Settings, node_id: str):
        self.nc = nc
        self.subject = changes_subject(settings.cluster)
        self.node_id = node_id
        self._sub = None
        self._apply: ApplyChange | None = None

    async def start(self, apply: ApplyChange) -> None:
        self._apply = apply
        self._sub = await self.nc.subscribe(self.subject, cb=self._on_message)

    async def announce(self, function: str, keep: int | None) -> None:
        try:
            await self.nc.publish(self.subject, orjson.dumps({"function": function, "keep": keep,
                                                              "origin": self.node_id}))
        except Exception as exc:  # noqa: BLE001 - NATS away: the catalog TTL and keep-alive cover it
            log.warning("could not announce the change of function %r to the cluster (%s: %s); other nodes "
                        "see it within the catalog's TTL", function, type(exc).__name__, exc)

    async def _on_message(self, msg) -> None:
        try:
            change = orjson.loads(msg.data)
            function, keep, origin = str(change["function"]), change["keep"], change["origin"]
            keep = None if keep is None else int(keep)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring a malformed function change on %s (%s)", self.subject, exc)
            return
        if origin != self.node_id and self._apply is not None:
            self._apply(function, keep)

    async def close(self) -> None:
        if self._sub is not None:
            await unsubscribe(self._sub, self.subject)
            self._sub = None
