"""The active version of each function, cached: the invoke path must not hit the database.

This process invalidates an entry itself whenever it deploys or deletes; `ttl_s` bounds how
long another node's change can go unseen in a cluster.
"""
from __future__ import annotations

import time

from frazil.store.functions import FunctionStore
from frazil.store.models import FunctionVersion


class FunctionCatalog:
    def __init__(self, store: FunctionStore, ttl_s: float = 2.0):
        self._store = store
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, FunctionVersion | None]] = {}

    async def active(self, name: str) -> FunctionVersion | None:
        hit = self._cache.get(name)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        version = await self._store.active(name)
        self._cache[name] = (now, version)
        return version

    def invalidate(self, name: str) -> None:
        self._cache.pop(name, None)
