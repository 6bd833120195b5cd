"""Waiting for a condition with a deadline: the one way the harness and the tests wait."""
from __future__ import annotations

import os
import time

from frazil.settings import ENV_VM_SLOWDOWN

# How much slower than a normal machine the one running the tests is: the cgroup v2 VM
# (scripts/vm/run.sh) emulates its CPUs, 10-40x slower, and sets it. Every wait of the tests
# and the harness is stretched by it; 1 elsewhere.
SLOWDOWN = float(os.environ.get(ENV_VM_SLOWDOWN, "1"))


class TimedOut(AssertionError):
    """The condition did not come true in time. An AssertionError: in a test, a failure."""


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value (returned), or fail after `timeout` seconds
    (times SLOWDOWN).

    Exceptions from `predicate` propagate: a condition that can no longer come true (a process
    that exited) should raise rather than wait out the deadline."""
    timeout *= SLOWDOWN
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
