"""A tight keep-alive HTTP/1.1 client for per-request latency: raw bytes over one socket, so
its own cost is the same for every route and every server measured."""
from __future__ import annotations

import re
import socket
import time

from frazil.testing import HOST


def http_request_bytes(method: str, path: str, port: int, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: keep-alive"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_CL_RE = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class KeepAliveClient:
    """One persistent connection, blocking, TCP_NODELAY, no HTTP library: per-request cost
    on the client side is a send and one or two recvs (a few µs)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        buf = self._buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        head = buf[:end]
        m = _CL_RE.search(head)
        if m is None:
            raise ValueError(f"response without Content-Length: {head[:300]!r}")
        length = int(m.group(1))
        total = end + 4 + length
        while len(buf) < total:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        self._buf = buf[total:]
        return int(head[9:12]), buf[end + 4:total]

    def timed(self, request: bytes, n: int, check=None) -> list[float]:
        """n sequential round trips; latencies in ms. `check(status, body)` runs outside
        the timed region and may raise."""
        out = []
        clock = time.perf_counter_ns
        for _ in range(n):
            t0 = clock()
            status, body = self.roundtrip(request)
            out.append((clock() - t0) / 1e6)
            if check is not None:
                check(status, body)
        return out


def check_status_200(status: int, body: bytes) -> None:
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")


def envelope_checker(expect_cold: bool | None):
    import orjson

    def check(status: int, body: bytes) -> None:
        check_status_200(status, body)
        env = orjson.loads(body)
        if not env.get("success"):
            raise RuntimeError(f"invocation failed: {env}")
        if expect_cold is not None and env.get("cold") is not expect_cold:
            raise RuntimeError(f"expected cold={expect_cold}, got {env}")

    return check
