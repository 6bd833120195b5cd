"""Attributes an instance's output pipe to invocations, keeping at most `cap` bytes each.

The runtime writes a per-invocation marker after flushing the function's output and before
answering; what arrives before the marker belongs to that invocation. Output that arrives
while the instance is idle (a background thread printing) is kept for the next invocation.
Bytes over the cap are counted and dropped as they arrive: memory stays bounded however
much a function prints.

Several markers may be awaited at once, in the order the runtime writes them (a cold
instance's init marker, then its first invocation's, sent right behind init). The runtime
writes each marker at most once and in that order, but may skip one (when the pipe was empty,
its answer says so): finding a marker therefore settles every marker queued before it too,
and the text up to it is sealed as one piece. `take()` returns every piece sealed so far.
"""
from __future__ import annotations

import asyncio
from collections import deque


class OutputCapture:
    def __init__(self, cap: int):
        self._cap = cap
        self._kept = bytearray()
        self._dropped = 0
        self._held = b""  # a tail that may be the start of a marker
        # The markers awaited, in the order the runtime writes them, each with its future.
        self._markers: deque[tuple[bytes, asyncio.Future | None]] = deque()
        self._sealed: list[str] = []  # the texts sealed at markers and not taken yet

    def expect(self, marker: bytes, seen: asyncio.Future) -> None:
        """Start collecting for an invocation (or an init) that will end with `marker`,
        after those expected already."""
        self._markers.append((marker, seen))

    def feed(self, data: bytes) -> None:
        if not self._markers:
            self._keep(data)
            return
        window = self._held + data
        self._held = b""
        while self._markers:
            found = [(at, i) for i, (marker, _) in enumerate(self._markers) if (at := window.find(marker)) >= 0]
            if not found:
                # Keep all but a tail too short to hold a whole marker.
                longest = max(len(marker) for marker, _ in self._markers)
                split = max(0, len(window) - (longest - 1))
                self._keep(window[:split])
                self._held = window[split:]
                return
            at, index = min(found)
            marker, _ = self._markers[index]
            self._keep(window[:at])
            self._sealed.append(self._render())
            window = window[at + len(marker):]
            for _ in range(index + 1):  # this one, and those before it, skipped by the runtime
                _, seen = self._markers.popleft()
                if seen is not None and not seen.done():
                    seen.set_result(None)
        self._keep(window)  # printed after the last awaited marker: the next invocation's

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
        """The output sealed at markers and not taken yet; when a marker awaited never came
        (a timeout, a crash, or the runtime saw the pipe empty and skipped it) or none was
        sealed, all there is so far, and no marker is awaited any more."""
        if self._markers or not self._sealed:
            self._keep(self._held)  # no marker is coming: the held tail is plain output
            self._held = b""
            self._markers.clear()
            self._sealed.append(self._render())
        text = "".join(self._sealed)
        self._sealed = []
        return text
