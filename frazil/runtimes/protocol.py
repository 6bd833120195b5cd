"""The wire protocol between the platform and a runtime inside an instance. Version 1.

Standard library only: the Python runtime imports this file as the top-level module
`protocol` inside the sandbox, and the platform imports it as `frazil.runtimes.protocol`.
The Node runtime (`node/protocol.js`) speaks the same bytes.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON (one
object with a "type"). The channel is a private socketpair; the function's stdout and
stderr go to a separate pipe, so nothing a function prints can forge a frame.

Messages, in the order they flow for one instance:
  runtime -> platform  {"type": "hello", "protocol": 1, "runtime": "python3.11", "pid": N}
  platform -> runtime  {"type": "init", "handler": "index.main", "code_dir": "/code",
                        "layer_dirs": [...], "env": {...}, "function": "name", "version": N,
                        "memory_mb": 128}
  runtime -> platform  {"type": "ready"}  or  {"type": "init_error", "error": ERROR}
  then, one at a time:
  platform -> runtime  {"type": "invoke", "id": "...", "event": <json>, "deadline_ms": <epoch ms>,
                        "cold": bool, "log_marker": "...", "sdk_token": "..."}
  runtime -> platform  {"type": "result", "id": "...", "ok": true, "result": <json>}
                   or  {"type": "result", "id": "...", "ok": false, "error": ERROR}
ERROR is {"type": "<class name>", "message": "...", "stack": "..."}.

Before each "result" the runtime flushes the function's output and writes `log_marker`
to the output pipe, so the platform knows which output belongs to which invocation. When
the pipe is empty at that moment it may skip the marker and say so with "marker": false in
the result, "ready" or "init_error" (everything printed was already read by the platform).
SDK calls (db, http, log) travel on the same channel as "sdk_call"/"sdk_reply" frames,
each with a "call" id, so a handler can have many in flight. A call carries the running
invocation's "sdk_token"; the platform refuses calls whose token is not the current one.
"""
from __future__ import annotations

import json
import struct

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024

HELLO = "hello"
INIT = "init"
READY = "ready"
INIT_ERROR = "init_error"
INVOKE = "invoke"
RESULT = "result"
SDK_CALL = "sdk_call"
SDK_REPLY = "sdk_reply"


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid frame."""


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
