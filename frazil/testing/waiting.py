"""Waiting for a condition with a deadline: the one way the harness and the tests wait."""
from __future__ import annotations

import time


class TimedOut(AssertionError):
    """The condition did not come true in time. An AssertionError: in a test, a failure."""


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value (returned), or fail after `timeout` seconds.

    Exceptions from `predicate` propagate: a condition that can no longer come true (a process
    that exited) should raise rather than wait out the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
