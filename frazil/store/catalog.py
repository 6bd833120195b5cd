"""The active version of each function, cached: the invoke path must not hit the database.

This process updates an entry itself whenever it deploys or deletes. In the embedded default
it is the only writer, so entries never expire (`ttl_s=None`); where other nodes deploy too,
`ttl_s` bounds how long their change can go unseen.
"""
from __future__ import annotations

import time

from frazil.store.functions import FunctionStore
from frazil.store.models import FunctionVersion


class FunctionCatalog:
    def __init__(self, store: FunctionStore, ttl_s: float | None = None):
        self._store = store
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, FunctionVersion]] = {}

    async def active(self, name: str) -> FunctionVersion | None:
        hit = self._cache.get(name)
        now = time.monotonic()
        if hit is not None and (self._ttl_s is None or now - hit[0] < self._ttl_s):
            return hit[1]
        version = await self._store.active(name)
        if version is not None:  # misses are not kept: random names must not grow the cache
            self._cache[name] = (now, version)
        return version

    def invalidate(self, name: str) -> None:
        self._cache.pop(name, None)
