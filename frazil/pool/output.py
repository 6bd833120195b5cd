"""Attributes an instance's output pipe to invocations, keeping at most `cap` bytes each.

The runtime writes a per-invocation marker after flushing the function's output and before
answering; what arrives before the marker belongs to that invocation. Output that arrives
while the instance is idle (a background thread printing) is kept for the next invocation.
Bytes over the cap are counted and dropped as they arrive: memory stays bounded however
much a function prints.
"""
from __future__ import annotations

import asyncio


class OutputCapture:
    def __init__(self, cap: int):
        self._cap = cap
        self._kept = bytearray()
        self._dropped = 0
        self._held = b""  # a tail that may be the start of the marker
        self._marker: bytes | None = None
        self._marker_seen: asyncio.Future | None = None
        self._sealed: str | None = None  # the text of the invocation whose marker arrived

    def expect(self, marker: bytes, seen: asyncio.Future) -> None:
        """Start collecting for an invocation that will end with `marker`."""
        self._marker = marker
        self._marker_seen = seen
        self._sealed = None

    def feed(self, data: bytes) -> None:
        if self._marker is None:
            self._keep(data)
            return
        window = self._held + data
        at = window.find(self._marker)
        if at < 0:
            # Keep all but a tail too short to hold the whole marker.
            split = max(0, len(window) - (len(self._marker) - 1))
            self._keep(window[:split])
            self._held = window[split:]
            return
        self._held = b""
        self._keep(window[:at])
        after = window[at + len(self._marker):]
        self._sealed = self._render()
        self._marker = None
        self._keep(after)  # printed after the invocation ended: the next one's
        if self._marker_seen is not None and not self._marker_seen.done():
            self._marker_seen.set_result(None)

    def _keep(self, data: bytes) -> None:
        room = self._cap - len(self._kept)
        if room > 0:
            self._kept += data[:room]
        self._dropped += max(0, len(data) - max(room, 0))

    def _render(self) -> str:
        text = bytes(self._kept).decode("utf-8", errors="replace")
        if self._dropped:
            text += f"\n[frazil: output truncated, {self._dropped} more bytes dropped]\n"
        self._kept = bytearray()
        self._dropped = 0
        return text

    def take(self) -> str:
        """The current invocation's output: sealed at its marker, or all there is so far
        when the marker never came (a timeout or a crash)."""
        if self._sealed is not None:
            text, self._sealed = self._sealed, None
            return text
        self._keep(self._held)  # no marker is coming: the held tail is plain output
        self._held = b""
        self._marker = None
        return self._render()
