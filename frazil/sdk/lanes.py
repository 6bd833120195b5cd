"""`Lane`: how many SDK calls of one kind (db, http) one invocation may have at the platform.

At most `running` are served at once and at most `waiting` more wait for a turn; a call beyond
those is refused when its frame arrives (`admit()` is False), before any task or queue entry
exists for it. So however fast a function writes sdk_call frames, the platform holds at most
`running + waiting` of its calls of each kind.

Invariant: `admitted` counts the calls `admit()` let in whose `turn()` has not finished; a
lane belongs to one invocation, and is dropped with it, so a call that never took its turn
(cancelled before it started) cannot leak a place into another invocation.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager


class Lane:
    def __init__(self, running: int, waiting: int):
        self.running = running
        self.waiting = waiting
        self.admitted = 0
        self._slots = asyncio.Semaphore(running)

    def admit(self) -> bool:
        """Take a place for a call now, or answer False: the lane is full."""
        if self.admitted >= self.running + self.waiting:
            return False
        self.admitted += 1
        return True

    @asynccontextmanager
    async def turn(self):
        """Wait for a running slot (for an admitted call), hold it, and give the place back."""
        try:
            async with self._slots:
                yield
        finally:
            self.admitted -= 1
