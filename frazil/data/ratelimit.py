"""Rate limits for what anyone may call: registrations and public async invocations per client
address (`RateLimiter`), and failed logins (`LoginThrottle`).

Every refusal is a `TooManyRequests` carrying `retry_after_s`, which the API sends as the
`Retry-After` header.

In-process: good for the embedded default (one process). In a cluster each gateway counts on
its own, so the effective limits are multiplied by the number of gateways.

Memory stays bounded under a spray of addresses and usernames: once `SWEEP_AT` keys are held,
every key that no longer limits anything is dropped.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

from frazil.errors import TooManyRequests

Clock = Callable[[], float]


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class RateLimiter:
    """A token bucket per key: `burst` calls at once, refilled at `burst` per `window_s`, so
    at most `burst` calls in any `window_s` after an idle spell, and `burst / window_s` per
    second on average."""

    SWEEP_AT = 10_000

    def __init__(self, burst: int, window_s: float, clock: Clock = time.monotonic):
        self.burst = burst
        self.rate = burst / window_s  # tokens per second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def take(self, key: str, what: str) -> None:
        """Spend one call of `key`'s, or refuse (429) saying when the next one is allowed."""
        now = self.clock()
        tokens = self._tokens(key, now)
        if tokens < 1:
            wait = (1 - tokens) / self.rate
            raise TooManyRequests(f"too many {what} from this address; try again in {_retry_after(wait)} s",
                                  retry_after_s=_retry_after(wait))
        if len(self._buckets) >= self.SWEEP_AT:
            self._sweep(now)
        self._buckets[key] = (tokens - 1, now)

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - then) * self.rate)

    def _sweep(self, now: float) -> None:
        for key in list(self._buckets):
            if self._tokens(key, now) >= self.burst:
                del self._buckets[key]


class FailureLimiter:
    """At most `max_failures` failures per key within `window_s` seconds; then refusals until
    the oldest failure leaves the window."""

    SWEEP_AT = 10_000

    def __init__(self, max_failures: int, window_s: float, clock: Clock = time.monotonic):
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
                retry = _retry_after(times[0] + self.window_s - now)
                raise TooManyRequests(f"too many failed {what}; try again in {retry} s", retry_after_s=retry)

    def fail(self, keys: Iterable[str]) -> None:
        now = self.clock()
        if len(self._failures) >= self.SWEEP_AT:
            for key in list(self._failures):
                self._recent(key, now)
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def forgive(self, key: str) -> None:
        """Take back the newest failure of `key` (an attempt counted ahead that succeeded)."""
        times = self._failures.get(key)
        if times:
            times.pop()
            if not times:
                del self._failures[key]

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)


@dataclass
class _Strikes:
    failures: int = 0  # since the last success (or since they were forgotten)
    locked_until: float = 0.0
    last: float = 0.0  # the last attempt


class LoginThrottle:
    """Failed logins, limited where they come from, so that nobody can lock a user out.

    - Per (username, address): after `max_failures` failures, each further attempt from that
      address for that username must wait, `delay_s` after the last failure, doubled with
      every further failure, at most `max_delay_s`. A success clears the count; failures are
      forgotten `window_s` after the wait they caused has passed.
    - Per address, over all usernames: at most `max_failures` failures within `window_s` (a
      spray of usernames from one address).
    There is deliberately no limit per username alone: a stranger's guesses from elsewhere
    would then lock the real user out. What bounds guessing one user's password from many
    addresses is the cost of each guess (argon2id) and the per-address limits.

    An attempt counts as a failure from the moment it is admitted (`admit`) until it succeeds
    (`succeeded`): a burst of simultaneous attempts cannot all slip past the limit while their
    password hashes are still being checked.
    """

    SWEEP_AT = 10_000

    def __init__(self, max_failures: int, window_s: float, delay_s: float, max_delay_s: float,
                 clock: Clock = time.monotonic):
        self.max_failures = max_failures
        self.window_s = window_s
        self.delay_s = delay_s
        self.max_delay_s = max_delay_s
        self.clock = clock
        self.addresses = FailureLimiter(max_failures, window_s, clock)
        self._strikes: dict[tuple[str, str | None], _Strikes] = {}

    def admit(self, username: str, address: str | None) -> None:
        """Let one attempt through, counted as a failure until it succeeds; or refuse (429)."""
        now = self.clock()
        key = (username, address)
        strikes = self._current(key, now)
        if strikes is not None and now < strikes.locked_until:
            retry = _retry_after(strikes.locked_until - now)
            raise TooManyRequests(f"too many failed logins for this username from this address; try again in "
                                  f"{retry} s", retry_after_s=retry)
        if address is not None:
            self.addresses.check([address], "logins from this address")
            self.addresses.fail([address])
        if strikes is None:
            if len(self._strikes) >= self.SWEEP_AT:
                self._sweep(now)
            strikes = self._strikes[key] = _Strikes()
        strikes.failures += 1
        strikes.last = now
        if strikes.failures >= self.max_failures:
            delay = self.delay_s * 2 ** (strikes.failures - self.max_failures)
            strikes.locked_until = now + min(self.max_delay_s, delay)

    def succeeded(self, username: str, address: str | None) -> None:
        self._strikes.pop((username, address), None)
        if address is not None:
            self.addresses.forgive(address)

    def _current(self, key, now: float) -> _Strikes | None:
        strikes = self._strikes.get(key)
        if strikes is not None and now >= max(strikes.locked_until, strikes.last) + self.window_s:
            del self._strikes[key]
            return None
        return strikes

    def _sweep(self, now: float) -> None:
        for key in list(self._strikes):
            self._current(key, now)
