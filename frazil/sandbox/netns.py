"""Network namespaces made ahead of time, for instances built on a cold start's critical path.

Why: every instance has its own network namespace (`frazil.sandbox.helper.netns` says what
that isolates), and making one costs a few hundred microseconds that the kernel serialises
across the whole machine. Instances built ahead of time make their own (nobody waits for
them); an instance built on demand (the zygote or exec path) takes one of these instead and
only setns() into it.

How: one dedicated thread of the platform makes them. unshare(CLONE_NEWNET) moves only the
calling thread, so the thread: unshares, opens /proc/thread-self/ns/net (the descriptor
keeps the namespace alive), brings `lo` up, and setns() back home before it makes the
next. It is never the event loop's thread nor an executor's: those must stay in the
platform's own namespace (they resolve names and open sockets).

Invariants: `_ready` (guarded by `_cond`) holds at most `target` descriptors, each a
namespace no process is in yet, with `lo` up; a descriptor taken is the taker's to close
(once sent to the launcher or the zygote); close() stops the thread and closes what is left.
Error policy of the thread: a namespace it cannot make is logged, and the thread waits
before it tries again (takers meanwhile find none and clone their own); if it cannot go
back home it stops for good, since it would make namespaces inside the wrong one.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import deque

from frazil.sandbox.helper import syscalls as sc
from frazil.sandbox.helper.netns import loopback_up

log = logging.getLogger(__name__)

READY_TARGET = 8  # a burst of cold starts drains these; the rest clone their own
RETRY_S = 5.0
_OWN_NETNS = "/proc/thread-self/ns/net"


class NetnsPool:
    def __init__(self, target: int = READY_TARGET):
        self.target = target
        self._ready: deque[int] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.stats = {"made": 0, "taken": 0, "missed": 0, "failed": 0}

    def start(self) -> None:
        if self._thread is None and self.target > 0:
            self._closed = False
            self._thread = threading.Thread(target=self._run, name="frazil-netns", daemon=True)
            self._thread.start()

    def take(self) -> int | None:
        """A ready namespace's descriptor (the caller closes it), or None when none is ready.
        Never blocks for long: the lock is only held to pop."""
        with self._cond:
            fd = self._ready.popleft() if self._ready else None
            self.stats["taken" if fd is not None else "missed"] += 1
            self._cond.notify()
        return fd

    def ready_count(self) -> int:
        with self._cond:
            return len(self._ready)

    def close(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        with self._cond:
            while self._ready:
                os.close(self._ready.popleft())

    def _run(self) -> None:
        home = os.open(_OWN_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while True:
                with self._cond:
                    while not self._closed and len(self._ready) >= self.target:
                        self._cond.wait()
                    if self._closed:
                        return
                fd = None
                try:
                    fd = self._make()
                except OSError as exc:
                    self.stats["failed"] += 1
                    log.warning("making a network namespace ahead of time failed (instances make their own): %s", exc)
                try:
                    sc.setns(home, sc.CLONE_NEWNET)
                except OSError as exc:
                    log.error("the network namespace maker could not go home, it stops: %s", exc)
                    if fd is not None:
                        os.close(fd)
                    return
                with self._cond:
                    if fd is None:
                        self._cond.wait(RETRY_S)
                        continue
                    if self._closed:
                        os.close(fd)
                        return
                    self._ready.append(fd)
                    self.stats["made"] += 1
        finally:
            os.close(home)

    @staticmethod
    def _make() -> int:
        """A new namespace with `lo` up; leaves this thread inside it (the caller goes home)."""
        sc.unshare(sc.CLONE_NEWNET)
        fd = os.open(_OWN_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            loopback_up()
        except BaseException:
            os.close(fd)
            raise
        return fd
