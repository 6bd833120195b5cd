"""The wire protocol between the platform and a runtime inside an instance. Version 2
(version 1 had no frame rules or limits per kind: see "What a runtime may send" below).

Standard library only: the Python runtime imports this file as the top-level module
`protocol` inside the sandbox, and the platform imports it as `frazil.runtimes.protocol`.
The Node runtime (`node/protocol.js`) speaks the same bytes.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON (one
object with a "type"). The channel is a private socketpair; the function's stdout and
stderr go to a separate pipe, so nothing a function prints can forge a frame.

Messages, in the order they flow for one instance:
  runtime -> platform  {"type": "hello", "protocol": 2, "runtime": "python3.11", "pid": N}
  platform -> runtime  {"type": "init", "handler": "index.main", "code_dir": "/code",
                        "layer_dirs": [...], "env": {...}, "function": "name", "version": N,
                        "memory_mb": 128}
  runtime -> platform  {"type": "ready"}  or  {"type": "init_error", "error": ERROR}
  then, one at a time:
  platform -> runtime  {"type": "invoke", "id": "...", "event": <json>, "deadline_ms": <epoch ms>,
                        "cold": bool, "log_marker": "...", "sdk_token": "...",
                        "user": {"id", "username"}}   (user: only when an end user called)
                       A cold instance's first invoke is sent right behind "init", before its
                       answer: it carries "timeout_ms" instead of "deadline_ms" (the deadline is
                       that long after the runtime starts the invocation). The runtime serves
                       it once init is done; after "init_error" it serves nothing more.
  runtime -> platform  {"type": "result", "id": "...", "ok": true, "duration_ms": N, "result": <json>}
                   or  {"type": "result", "id": "...", "ok": false, "duration_ms": N, "error": ERROR}
ERROR is {"type": "<class name>", "message": "...", "stack": "..."}. "duration_ms" is how long
the handler ran, by the runtime's clock: the platform takes it, but never more than it saw
from sending the invocation to reading the result (without it, the platform's own figure).

Before each "result" the runtime flushes the function's output and writes `log_marker`
to the output pipe, so the platform knows which output belongs to which invocation. When
the pipe is empty at that moment it may skip the marker and say so with "marker": false in
the result, "ready" or "init_error" (everything printed was already read by the platform).
SDK calls (db, http) travel on the same channel as "sdk_call"/"sdk_reply" frames,
each with a "call" id, so a handler can have many in flight. A call carries the running
invocation's "sdk_token"; the platform refuses calls whose token is not the current one.

What a runtime may send, and when (the platform trusts nothing else; see `RuntimeFrameLimits`
and `GuardedDecoder`, and frazil/pool/instance.py for the rules that need its state):
  - every frame's payload begins with `{"type":"<kind>"` exactly (no space, "type" first), so
    the platform knows a frame's kind, and so its limit, from its first bytes;
  - no frame is larger than its kind's limit (`RuntimeFrameLimits`): the platform decides
    from the length prefix and the kind, before it buffers the body;
  - "hello" only first; "ready" or "init_error" only in answer to "init";
  - "result" only while an invocation runs, once, with that invocation's "id";
  - "sdk_call" only with the token of the running invocation (a recently ended invocation's
    token is refused with an sdk_reply: a thread of the function may race main's return);
  - nothing else. Anything else ends the instance (and fails its invocation, if one runs).
A runtime must read its sdk_replies: while too many reply bytes are unread
(`REPLY_BACKLOG_BYTES`) the platform reads nothing more from it.
"""
from __future__ import annotations

import json
import struct
from typing import Iterator

PROTOCOL_VERSION = 2
HEADER = struct.Struct(">I")
KIB = 1024
MIB = 1024 * KIB
MAX_FRAME_BYTES = 64 * MIB  # what either side's plain decoder accepts at all

HELLO = "hello"
INIT = "init"
READY = "ready"
INIT_ERROR = "init_error"
INVOKE = "invoke"
RESULT = "result"
SDK_CALL = "sdk_call"
SDK_REPLY = "sdk_reply"


# --- what a runtime may send ---------------------------------------------------------------

# Every runtime frame's payload starts with this, then its kind (a short lower-case word), then '"'.
KIND_PREFIX = b'{"type":"'
MAX_KIND_BYTES = 16
_KIND_WINDOW = len(KIND_PREFIX) + MAX_KIND_BYTES + 1  # bytes that must name the kind

# A result frame may carry its result (at most the instance's `max_result_bytes`, 6 MB by
# default) plus this much of envelope: "type", "id", "ok", "marker" and the JSON around them.
RESULT_ENVELOPE_BYTES = 64 * KIB
# Runtimes cut an error's message and stack to this many characters each, so that an error
# fits any frame that carries one (init_error, result), however the function failed.
ERROR_TEXT_CHARS = 32 * KIB
# An sdk_call carries at most a 6 MB HTTP body, base64-encoded (8 MB), plus its other fields.
MAX_SDK_CALL_BYTES = 8 * MIB + 256 * KIB
# A runtime's unread sdk_reply bytes the platform keeps before it stops reading from it.
REPLY_BACKLOG_BYTES = 8 * MIB


class RuntimeFrameLimits:
    """The largest frame of each kind a runtime may send; a kind not here is never legal."""

    def __init__(self, max_result_bytes: int):
        self.by_kind = {
            HELLO: 4 * KIB,
            READY: 4 * KIB,
            INIT_ERROR: 1 * MIB,  # two texts of ERROR_TEXT_CHARS, escaped, and a type
            RESULT: max_result_bytes + RESULT_ENVELOPE_BYTES,
            SDK_CALL: MAX_SDK_CALL_BYTES,
        }
        self.largest = max(self.by_kind.values())

    def __getitem__(self, kind: str) -> int:
        return self.by_kind[kind]


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid frame."""


class FrameTooLarge(ProtocolError):
    """A frame's length prefix announced more than its kind may carry; `kind` is None when the
    length alone exceeded what any frame may be."""

    def __init__(self, kind: str | None, size: int, limit: int):
        what = f"a {kind!r} frame" if kind else "a frame"
        super().__init__(f"{what} of {size} bytes; the limit is {limit}")
        self.kind = kind
        self.size = size
        self.limit = limit


class UnexpectedFrame(ProtocolError):
    """A frame of a kind the reader does not accept (now, or ever)."""

    def __init__(self, kind: str, why: str):
        super().__init__(f"a {kind!r} frame {why}")
        self.kind = kind


def encode(message: dict) -> bytes:
    """One frame from a JSON-able dict (stdlib json; the platform may pre-encode payloads)."""
    return frame(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())


def frame(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, get complete payloads back."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES):
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            if size > self._max:
                raise ProtocolError(f"frame of {size} bytes exceeds {self._max}")
            end = HEADER.size + size
            if len(self._buf) < end:
                break
            frames.append(bytes(self._buf[HEADER.size:end]))
            del self._buf[:end]
        return frames


class GuardedDecoder:
    """The platform's decoder for what a runtime sends: each frame is judged by its length and
    kind before its body is buffered.

    `limit_for(kind)` answers the largest frame of `kind` acceptable now, or raises
    UnexpectedFrame when that kind is not acceptable now; `largest` bounds every frame. feed()
    raises FrameTooLarge as soon as a length prefix (with, when it came along, the kind after it)
    exceeds its limit, so at most `_KIND_WINDOW` bytes of a refused frame are ever held. After
    an error the decoder is spent: the caller drops the channel.
    """

    def __init__(self, limit_for, largest: int):
        self._limit_for = limit_for
        self._largest = largest
        self._buf = bytearray()
        self._size: int | None = None  # the announced size of the frame being received ...
        self._kind: str | None = None  # ... and its kind, once judged

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        """The frames completed by `data`, as (kind, payload)."""
        return list(self.frames(data))

    def frames(self, data: bytes) -> Iterator[tuple[str, bytes]]:
        """`feed()`, one frame at a time: the next frame's kind is judged only once the one
        before it was taken, so a frame may change what may follow it (the answer to init
        lets the result of an invocation sent right behind init follow in the same read)."""
        self._buf += data
        try:
            while (frame := self._take_one()) is not None:
                yield frame
        except ProtocolError:
            self._buf.clear()  # spent: nothing of a refused frame is kept
            raise

    def _take_one(self) -> tuple[str, bytes] | None:
        if self._size is None:
            if len(self._buf) < HEADER.size:
                return None
            (self._size,) = HEADER.unpack_from(self._buf, 0)
            del self._buf[:HEADER.size]
        if self._kind is None:
            window = bytes(self._buf[:min(self._size, _KIND_WINDOW)])
            kind = _kind_of(window, complete=len(window) == min(self._size, _KIND_WINDOW))
            if kind is None:  # its first bytes are still on their way
                if self._size > self._largest:  # no kind could carry it: judged now
                    raise FrameTooLarge(None, self._size, self._largest)
                return None
            limit = self._limit_for(kind)  # raises UnexpectedFrame
            if self._size > limit:
                raise FrameTooLarge(kind, self._size, limit)
            self._kind = kind
        if len(self._buf) < self._size:
            return None
        frame = (self._kind, bytes(self._buf[:self._size]))
        del self._buf[:self._size]  # (a bytearray drops its front without moving the rest)
        self._size = self._kind = None
        return frame


def _kind_of(window: bytes, complete: bool) -> str | None:
    """The kind a frame names in its first bytes (see the module docstring); None while
    those bytes are not all there (`complete`: they are, or the frame is shorter)."""
    head = window[:len(KIND_PREFIX)]
    end = window.find(b'"', len(KIND_PREFIX))
    if not KIND_PREFIX.startswith(head) or (complete and not window.startswith(KIND_PREFIX)):
        raise ProtocolError(f"a frame that does not begin with {KIND_PREFIX.decode()}: {window[:24]!r}")
    if end < 0:
        if not complete:
            return None
        raise ProtocolError(f"a frame whose type is not a short lower-case word: {window!r}")
    kind = window[len(KIND_PREFIX):end]
    if not kind or not kind.replace(b"_", b"").isalpha() or not kind.islower():
        raise ProtocolError(f"a frame whose type is not a short lower-case word: {window!r}")
    return kind.decode()


def cut_text(text: str, chars: int = ERROR_TEXT_CHARS, keep_end: bool = False) -> str:
    """`text` cut to at most `chars` characters, saying so (the start kept, or the end)."""
    if len(text) <= chars:
        return text
    note = f"[... {len(text) - chars} characters cut ...]"
    return note + text[len(text) - chars:] if keep_end else text[:chars] + note


def read_frame(stream) -> bytes | None:
    """Blocking read of one payload from a binary file object; None at a clean EOF."""
    header = _read_exact(stream, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    payload = _read_exact(stream, size)
    if payload is None:
        raise ProtocolError("channel closed in the middle of a frame")
    return payload


def _read_exact(stream, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if remaining == size:
                return None
            raise ProtocolError("channel closed in the middle of a frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
