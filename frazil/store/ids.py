"""Identifiers: time-ordered, so sorting by id sorts by creation."""
import secrets
import threading
import time


class TimeOrderedIds:
    """Ids of 28 hex digits: epoch milliseconds (12), a sequence (4), random (12).

    Within one process ids strictly increase, so sorting by id is creation order even within
    one millisecond; across processes (a cluster) it is creation order to the millisecond. The
    clock going backwards never makes an id smaller than the last one."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ms = 0
        self._seq = 0

    def __call__(self) -> str:
        with self._lock:
            ms = int(time.time() * 1000)
            if ms > self._ms:
                self._ms, self._seq = ms, 0
            else:
                self._seq += 1
                if self._seq > 0xFFFF:  # 65536 ids in one millisecond: borrow the next one
                    self._ms, self._seq = self._ms + 1, 0
            return f"{self._ms:012x}{self._seq:04x}{secrets.token_hex(6)}"


# Invocations, instances and BaaS records all take their ids from this one generator.
new_id = TimeOrderedIds()


def id_floor(ts: float) -> str:
    """A string every id made before epoch time `ts` sorts below, and none made from then on
    (ids begin with their epoch milliseconds, fixed-width hex)."""
    return f"{int(ts * 1000):012x}"
