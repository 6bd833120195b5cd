"""How the server process holds its HTTP connections: what uvicorn is told, and the little it
lacks, added by a subclass of its httptools protocol.

uvicorn closes a kept-alive connection idle for `timeout_keep_alive` (our
`server_keep_alive_s`), but a connection that never sends a request, or sends its headers a
byte at a time, it keeps forever; nor does it cap open connections (`limit_concurrency` answers
503 to requests, while silent connections go on holding descriptors). `HeaderTimeoutProtocol`:
- a response's status line and headers go out in one write with its body's first part
  (`OneWriteResponses`): uvicorn writes them apart, two TCP segments, each waking the client;
- a request's headers must be complete within `server_header_timeout_s`, counted from the
  connection's start, or from the first byte of each later request; else the connection gets
  408 and is closed. (Between requests, uvicorn's keep-alive timer is in charge.)
- beyond `max_connections` open connections, a new one gets 503 and is closed at once.

The process's open-files soft limit is raised to its hard limit at start
(`raise_open_files_limit`): every connection, instance and database file holds descriptors,
and the soft limit is often a frugal 1024 under a hard limit many times larger.
"""
from __future__ import annotations

import logging
import resource

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

# Descriptors kept for everything but client connections (instances, the database, files):
# the connection cap is at most the open-files limit minus this share of it.
RESERVED_FD_SHARE = 0.5



def _closing_response(status: str, type_: str, message: str, extra: bytes = b"") -> bytes:
    """A whole HTTP response, written straight to the transport, that ends the connection."""
    body = b'{"success":false,"message":"%s","error":{"type":"%s","message":"%s"}}' % (
        message.encode(), type_.encode(), message.encode())
    return (b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nconnection: close\r\n%scontent-length: %d\r\n\r\n"
            % (status.encode(), extra, len(body))) + body


_REFUSED_503 = _closing_response("503 Service Unavailable", "ServiceUnavailable",
                                 "too many open connections; try again later", b"retry-after: 1\r\n")
_TIMEOUT_408 = _closing_response("408 Request Timeout", "RequestTimeout",
                                 "the request headers did not arrive in time")


def raise_open_files_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; answers the soft limit now."""
    from frazil.sandbox.build import OPEN_FILES_LIMIT

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < OPEN_FILES_LIMIT:
        # Said once here: instances cannot be given more than we have (sandbox.build.rlimits).
        log.warning("the open-files hard limit is %d: each instance gets at most %d open files (not %d), "
                    "and client connections are capped at half of it", hard, hard, OPEN_FILES_LIMIT)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # an infinite hard limit the kernel caps lower
            log.warning("could not raise the open-files limit from %s to %s: %s", soft, hard, exc)
    return soft


def connection_cap(wanted: int, open_files: int) -> int:
    """`wanted`, lowered so that connections leave RESERVED_FD_SHARE of `open_files` free."""
    allowed = max(1, int(open_files * (1 - RESERVED_FD_SHARE)))
    if wanted > allowed:
        log.warning("server_max_connections lowered from %d to %d: the open-files limit is %d",
                    wanted, allowed, open_files)
    return min(wanted, allowed)


class OneWriteResponses:
    """The transport as a response cycle sees it: its first write (the status line and headers,
    or a 100 Continue) is held and goes out joined to the next, in one send - at the latest at
    the end of this turn of the event loop, and before a close. So a small response costs the
    server one send and the client one wake-up, not two."""

    __slots__ = ("_transport", "_held", "_first", "_loop")

    def __init__(self, transport, loop):
        self._transport = transport
        self._held: bytes | None = None
        self._first = True
        self._loop = loop

    def write(self, data: bytes) -> None:
        if self._first:
            self._first = False
            self._held = data
            self._loop.call_soon(self._flush)
        elif self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held + data)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name):  # anything else a cycle might use, as the transport has it
        return getattr(self._transport, name)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a connection cap (see the module
    docstring). `protocol_class` makes a subclass with the two numbers set."""

    header_timeout_s: float = 10.0
    max_connections: int = 1000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._header_timer = None  # armed while a request's headers are being awaited

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_REFUSED_503)
            transport.close()
            return
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a new request's cycle (none for an upgrade); not started yet
            self.cycle.transport = OneWriteResponses(self.transport, self.loop)

    def connection_lost(self, exc) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # no response of ours under way
            self.transport.write(_TIMEOUT_408)
        self.transport.close()


def protocol_class(header_timeout_s: float, max_connections: int) -> type[HeaderTimeoutProtocol]:
    """The protocol uvicorn is given (`http=`), with our settings."""
    return type("FrazilHttpProtocol", (HeaderTimeoutProtocol,),
                {"header_timeout_s": header_timeout_s, "max_connections": max_connections})
