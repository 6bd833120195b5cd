"""A listening TCP socket inside an instance's network namespace, held by the platform.

Why: an instance's namespace has only `lo` (frazil.sandbox.helper.netns), so nothing in it can
reach the platform over TCP. A socket the platform binds on 127.0.0.1:PORT *in that namespace*
is reachable from the instance's processes, and only from them (no other namespace sees that
loopback), while the platform accepts on it from its own event loop. The instance runs nothing
for it, and whoever connects is known to be that instance: the socket is the credential.

How: the calling thread enters the namespace through the instance's pidfd for one synchronous
step (`visit.inside`: nothing else runs on it meanwhile, and a thread that cannot go home ends
the process), creates and binds the socket there, and goes home. A socket keeps the namespace
it was created in.

Refused (NotIsolated): a process whose namespace is the platform's own (a sandbox without
network isolation): binding there would open the port to the whole host.
"""
from __future__ import annotations

import os
import socket

from frazil.sandbox.helper import syscalls as sc
from frazil.sandbox.helper.visit import inside

_OWN_NETNS = "/proc/thread-self/ns/net"


class NotIsolated(OSError):
    """The process shares the platform's network namespace."""


def listen_in_netns(pidfd: int, address: str, port: int, backlog: int = 128) -> socket.socket:
    """A non-blocking socket listening on `address`:`port` in the network namespace of the
    process `pidfd` refers to. Raises NotIsolated or OSError (visit.Gone: it has exited)."""
    home_ns = os.stat(_OWN_NETNS).st_ino
    with inside(pidfd, sc.CLONE_NEWNET):
        if os.stat(_OWN_NETNS).st_ino == home_ns:
            raise NotIsolated("the process is in the platform's own network namespace")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
    return sock
