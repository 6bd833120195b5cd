"""The platform's end of an instance's protocol channel: frames in, judged before they are
buffered; replies out, with backpressure.

Invariants:
- inbound, at most one partial frame is held, and only once its length prefix and kind were
  accepted (`protocol.GuardedDecoder`): an oversized or unexpected frame costs the header and
  a few bytes of its kind, never its body;
- outbound, at most `protocol.REPLY_BACKLOG_BYTES` of unread bytes sit in the transport:
  above it, nothing more is read from the runtime until it reads what it was sent (its
  own writes then block, inside the sandbox), so a runtime that floods calls without reading
  the replies cannot make the platform hold more than that;
- after the first broken frame, nothing more is read or delivered.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from frazil.runtimes import protocol


class RuntimeChannel(asyncio.Protocol):
    """Delivers each accepted frame as `on_frame(kind, payload)`, which raises ProtocolError for
    a frame that breaks a rule; a broken stream as `on_broken(ProtocolError)` (once); the end
    as `on_lost()`.

    `limit_for(kind)` is the reader's rule of the moment: the largest acceptable frame of that
    kind now, or `protocol.UnexpectedFrame` raised when that kind may not come now."""

    def __init__(self, *, limit_for: Callable[[str], int], largest: int,
                 on_frame: Callable[[str, bytes], None], on_broken: Callable[[protocol.ProtocolError], None],
                 on_lost: Callable[[], None]):
        self._decoder = protocol.GuardedDecoder(limit_for, largest)
        self._on_frame = on_frame
        self._on_broken = on_broken
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self.broken = False

    def connection_made(self, transport) -> None:
        self._transport = transport
        transport.set_write_buffer_limits(high=protocol.REPLY_BACKLOG_BYTES)

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            for kind, payload in self._decoder.frames(data):  # each judged after the one before is taken
                self._on_frame(kind, payload)  # raises ProtocolError for a frame that breaks a rule
        except protocol.ProtocolError as exc:  # the frames after it are dropped unread
            self._break(exc)

    def _break(self, exc: protocol.ProtocolError) -> None:
        self.broken = True
        self._transport.pause_reading()
        self._on_broken(exc)

    def pause_writing(self) -> None:
        # The runtime does not read its replies: stop reading its calls until it does.
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.broken and not self._transport.is_closing():
            self._transport.resume_reading()

    def connection_lost(self, exc) -> None:
        self._on_lost()
