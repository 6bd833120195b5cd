"""How many generic instances of one shape recent demand needs (pure logic, no I/O).

The estimate is the number of cold starts of the shape in the last `window_s` seconds: if
the same demand comes again, that many instances ready serve all of it from pre-built
instances. It is raised to the shape's floor (what is kept whatever the demand) and capped
by its ceiling (a maximum per shape, never above the tier's concurrency). As cold starts
age out of the window the estimate decays back to the floor by itself; the pool re-reads it
periodically to drop what is no longer needed.

Invariants: `_times` holds the monotonic times of the recorded cold starts, oldest first,
at most `ceiling` of them (older ones cannot raise the estimate and are dropped).
"""
from __future__ import annotations

from collections import deque


class DemandEstimate:
    def __init__(self, window_s: float):
        self.window_s = window_s
        self._times: deque[float] = deque()

    def record(self, now: float, ceiling: int) -> None:
        """One cold start of the shape at `now`."""
        self._times.append(now)
        while len(self._times) > max(1, ceiling):
            self._times.popleft()
        self._expire(now)

    def recent(self, now: float) -> int:
        """Cold starts in the last `window_s` seconds."""
        self._expire(now)
        return len(self._times)

    def wanted(self, now: float, floor: int, ceiling: int) -> int:
        """How many to keep ready: the recent cold starts, at least `floor`, at most `ceiling`
        (a floor above the ceiling wins: it is what the operator asked to keep)."""
        return max(floor, min(self.recent(now), ceiling))

    def _expire(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
