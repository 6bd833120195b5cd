"""Fixtures for the SDK tests: a local upstream HTTP server the proxy talks to.

`Upstream` listens on 127.0.0.1 (a loopback address, so the proxy refuses it unless the server
under test is started with FRAZIL_HTTP_ALLOW=127.0.0.1:<port>). Its routes:
  /echo            answers {"method", "path", "headers", "body"} as JSON
  /hold            counts the requests in flight and holds each until `release()` (or 20 s)
  /redirect?to=U   302 to U
  /big?n=N         N bytes of "x"
  /bytes           a body that is not UTF-8
  /cookie          sets a cookie
  /gzip?n=N        N bytes of "0", gzip-encoded
  /bomb?mb=M&layers=L&enc=E...
                   M MiB of zero bytes gzip-compressed L times (default 1), sent with one
                   Content-Encoding header per `enc` (default: one header "gzip, gzip..." naming
                   every layer)
"""
from __future__ import annotations

import functools
import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

HOLD_LIMIT_S = 20.0


@functools.lru_cache(maxsize=8)
def zero_bomb(mb: int, layers: int = 1) -> bytes:
    """`mb` MiB of zero bytes, gzip-compressed `layers` times (made once per session)."""
    if layers > 1:
        return gzip.compress(zero_bomb(mb, layers - 1))
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(mb)) + packer.flush()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog: read in __init__, so set on the class

    def handle_error(self, request, client_address):
        pass  # a client that gave up (a timeout, an aborted request) is part of the tests


class Upstream:
    def __init__(self):
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.held_total = 0
        self.requests = []  # paths, in arrival order
        self.reached = {}  # in-flight count -> Event, set once that many were in flight
        self._release = threading.Event()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Upstream":
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def when_in_flight(self, n: int) -> threading.Event:
        with self.lock:
            event = self.reached.setdefault(n, threading.Event())
            if self.in_flight >= n:
                event.set()
            return event

    def release(self) -> None:
        self._release.set()

    def _hold(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.held_total += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            for n, event in self.reached.items():
                if self.in_flight >= n:
                    event.set()
        try:
            self._release.wait(HOLD_LIMIT_S)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _handler(self):
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json", headers=()):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _route(self):
                with upstream.lock:
                    upstream.requests.append(self.path)
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if url.path == "/echo":
                    answer = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                              "body": body.decode("utf-8", "replace")}
                    self._send(200, json.dumps(answer).encode())
                elif url.path == "/hold":
                    upstream._hold()
                    self._send(200, b'{"held": true}')
                elif url.path == "/redirect":
                    self._send(302, b"", "text/plain", [("Location", query["to"][0])])
                elif url.path == "/big":
                    self._send(200, b"x" * int(query["n"][0]), "text/plain")
                elif url.path == "/cookie":
                    self._send(200, b"{}", headers=[("Set-Cookie", "session=secret; Path=/")])
                elif url.path == "/gzip":
                    packed = gzip.compress(b"0" * int(query["n"][0]))
                    self._send(200, packed, "text/plain", [("Content-Encoding", "gzip")])
                elif url.path == "/bomb":
                    layers = int(query.get("layers", ["1"])[0])
                    body = zero_bomb(int(query["mb"][0]), layers)
                    encodings = query.get("enc") or [", ".join(["gzip"] * layers)]
                    self._send(200, body, "text/plain", [("Content-Encoding", e) for e in encodings])
                elif url.path == "/bytes":
                    self._send(200, bytes(range(256)), "application/octet-stream")
                else:
                    self._send(404, b'{"error": "no such route"}')

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _route

        return Handler


@pytest.fixture
def upstream():
    """A local upstream HTTP server for one test."""
    server = Upstream().start()
    yield server
    server.close()


@pytest.fixture
def proxied(upstream, server_factory):
    """A frazil server whose functions may reach `upstream` (and nothing else on loopback), with
    responses capped at 100 kB."""
    return server_factory(FRAZIL_HTTP_ALLOW=f"127.0.0.1:{upstream.port}", FRAZIL_HTTP_MAX_RESPONSE_BYTES=100_000)
