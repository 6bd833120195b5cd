"""Unprivileged user ids for instances: one distinct uid (and gid) per live instance.

Each platform scope gets its own block, so two platforms on one machine rarely share ids;
even when they do, instances are in separate PID namespaces and cannot see each other.
No uid in a block exists in /etc/passwd on the host or inside the sandbox.
"""
from __future__ import annotations

FIRST_UID = 10_000_000
BLOCK_SIZE = 10_000
BLOCKS = 400


class UidPool:
    def __init__(self, scope: str, size: int = BLOCK_SIZE):
        self.base = FIRST_UID + (int(scope, 16) % BLOCKS) * BLOCK_SIZE
        self.size = size
        self._free = list(range(self.base + size - 1, self.base - 1, -1))  # pop() gives the lowest
        self._used: set[int] = set()

    def acquire(self) -> int:
        if not self._free:
            raise RuntimeError(f"all {self.size} instance uids are in use")
        uid = self._free.pop()
        self._used.add(uid)
        return uid

    def release(self, uid: int) -> None:
        if uid in self._used:
            self._used.remove(uid)
            self._free.append(uid)

    def __contains__(self, uid: int) -> bool:
        return self.base <= uid < self.base + self.size
