"""Counting failed logins, per username and per client address.

In-process: good for the embedded default (one process). In a cluster each gateway counts on
its own, so the effective limit is multiplied by the number of gateways.
"""
from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable, Iterable

from frazil.errors import TooManyRequests


class FailureLimiter:
    """At most `max_failures` failures per key within `window_s` seconds; then refusals until
    the oldest failure leaves the window."""

    # Keys kept before a sweep of stale ones; bounds memory under a spray of usernames/addresses.
    SWEEP_AT = 10_000

    def __init__(self, max_failures: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}  # key -> failure times, oldest first

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def check(self, keys: Iterable[str], what: str) -> None:
        """Refuse (429) when any key has used up its failures."""
        now = self.clock()
        for key in keys:
            times = self._recent(key, now)
            if times is not None and len(times) >= self.max_failures:
                retry = max(1, math.ceil(times[0] + self.window_s - now))
                raise TooManyRequests(f"too many failed {what}; try again in {retry} s", retry_after_s=retry)

    def fail(self, keys: Iterable[str]) -> None:
        now = self.clock()
        if len(self._failures) >= self.SWEEP_AT:
            for key in list(self._failures):
                self._recent(key, now)
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)
