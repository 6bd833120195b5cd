"""Tier admission: at most `limit` running invocations per memory tier, never more.

A slot freed while callers wait is handed straight to the oldest waiter (first come, first
served), so the count never dips and rises again and nobody is starved by newcomers.

`TierSlots` is the embedded mode's (every slot of the tier is this process's); the cluster's
`frazil.cluster.slots.LeasedTierSlots` is the same class whose room is the block of slots its
node holds a lease on, and which leases more when a caller finds none (`short`).
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

    # --- what a mode decides -----------------------------------------------------------------

    def has_room(self) -> bool:
        """Whether one more invocation may start here now."""
        return self.running < self.limit

    @property
    def in_force(self) -> bool:
        """Whether the slots held here may still run invocations (embedded: always; a cluster
        node: while its lease on them lasts). Checked just before an invocation starts."""
        return True

    def short(self) -> None:
        """Told when a caller found no room (the cluster leases more; here nothing can come)."""

    # --- taking and giving -------------------------------------------------------------------

    def _take_now(self) -> bool:
        if not self._waiters and self.has_room():
            self.running += 1
            return True
        return False

    def try_take(self) -> bool:
        if self._take_now():
            return True
        self.short()
        return False

    async def take(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for a slot; False when none came."""
        if self._take_now():
            return True
        if timeout_s <= 0:
            self.short()
            return False
        return await self._wait_in_line(asyncio.get_running_loop().create_future(), timeout_s)

    async def _wait_in_line(self, waiter: asyncio.Future, timeout_s: float) -> bool:
        """Queue `waiter` behind the others and wait up to `timeout_s` for it to get a slot;
        an exception set on it (a cluster node's refusal) ends the wait and is raised."""
        self._waiters.append(waiter)
        self.short()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
            return True
        except asyncio.TimeoutError:
            if waiter.done() and not waiter.cancelled():
                waiter.result()  # raises the refusal that ended the wait (a cluster node's, frazil.cluster.slots)
                return True  # the slot arrived as the time ran out: it is ours
            waiter.cancel()
            return False
        finally:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def give(self) -> None:
        self.running -= 1
        if not self.admit_waiters() and not self._waiters:
            self.on_free()

    def admit_waiters(self) -> int:
        """Hand the room there is to the oldest waiters; how many got a slot. Nothing awaits
        between the count going down in give() and up here: nobody sees it dip."""
        admitted = 0
        while self._waiters and self.has_room():
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.running += 1
                admitted += 1
        return admitted

    @property
    def waiting(self) -> int:
        return len(self._waiters)


class Admission:
    """The slots of every tier of the installation (the embedded SlotAdmission)."""

    def __init__(self, settings: Settings):
        self.tiers = {mb: TierSlots(tier.concurrency) for mb, tier in settings.tiers.items()}

    def slots(self, memory_mb: int) -> TierSlots:
        return self.tiers[memory_mb]

    on_lapse = None  # embedded slots never lapse (the cluster's: frazil.cluster.slots)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
