"""Tier admission: at most `limit` running invocations per memory tier, never more.

A slot freed while callers wait is handed straight to the oldest waiter (first come, first
served), so the count never dips and rises again and nobody is starved by newcomers.
"""
from __future__ import annotations

import asyncio
from collections import deque

from frazil.settings import Settings


class TierSlots:
    def __init__(self, limit: int):
        self.limit = limit
        self.running = 0
        self._waiters: deque[asyncio.Future] = deque()
        self.on_free = lambda: None  # told when a slot frees with nobody waiting for it

    def try_take(self) -> bool:
        if self.running < self.limit and not self._waiters:
            self.running += 1
            return True
        return False

    async def take(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for a slot; False when none came."""
        if self.try_take():
            return True
        if timeout_s <= 0:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
            return True
        except asyncio.TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return True  # the slot arrived as the time ran out: it is ours
            waiter.cancel()
            return False
        finally:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: `running` is unchanged
                return
        self.running -= 1
        self.on_free()

    @property
    def waiting(self) -> int:
        return len(self._waiters)


class Admission:
    """The slots of every tier of the installation."""

    def __init__(self, settings: Settings):
        self.tiers = {mb: TierSlots(tier.concurrency) for mb, tier in settings.tiers.items()}

    def slots(self, memory_mb: int) -> TierSlots:
        return self.tiers[memory_mb]
