"""A listening TCP socket inside an instance's network namespace, held by the platform.

Why: an instance's namespace has only `lo` (frazil.sandbox.helper.netns), so nothing in it can
reach the platform over TCP. A socket the platform binds on 127.0.0.1:PORT *in that namespace*
is reachable from the instance's processes, and only from them (no other namespace sees that
loopback), while the platform accepts on it from its own event loop. The instance runs nothing
for it, and whoever connects is known to be that instance: the socket is the credential.

How: setns(CLONE_NEWNET) moves only the calling thread, so a thread of its own enters the
namespace through the instance's pidfd (race-free against pid reuse), creates and binds the
socket there, and goes home. It is never the event loop's thread nor an executor's (those must
stay in the platform's namespace); a thread that could not go home ends, as it does anyway.

Refused (NotIsolated): a process whose namespace is the platform's own (a sandbox without
network isolation): binding there would open the port to the whole host.
"""
from __future__ import annotations

import asyncio
import os
import socket
import threading

from frazil.sandbox.helper import syscalls as sc

_OWN_NETNS = "/proc/thread-self/ns/net"


class NotIsolated(OSError):
    """The process shares the platform's network namespace."""


async def listen_in_netns(pidfd: int, address: str, port: int, backlog: int = 128) -> socket.socket:
    """A non-blocking socket listening on `address`:`port` in the network namespace of the
    process `pidfd` refers to. Raises NotIsolated or OSError."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[socket.socket] = loop.create_future()
    pidfd = os.dup(pidfd)  # ours for the thread's life, whatever happens to the caller's

    def settle(result, error) -> None:
        if done.cancelled():
            if result is not None:
                result.close()
        elif error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def work() -> None:
        result, error = None, None
        try:
            result = _bind_inside(pidfd, address, port, backlog)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            error = exc
        finally:
            os.close(pidfd)
        loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="frazil-netns-listen", daemon=True).start()
    return await done


def _bind_inside(pidfd: int, address: str, port: int, backlog: int) -> socket.socket:
    home = os.open(_OWN_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        home_ns = os.fstat(home).st_ino
        sc.setns(pidfd, sc.CLONE_NEWNET)
        try:
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
        finally:
            sc.setns(home, sc.CLONE_NEWNET)  # if this raises, the thread ends with it (it is ours alone)
    finally:
        os.close(home)
