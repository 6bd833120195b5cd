"""Compression bombs through the SDK's HTTP proxy, against a real server and a local upstream:
a gzip body is decoded within the cap while it is decoded, so a bomb is a clear
ResponseTooLarge and costs the platform little memory; two content-coding layers are refused."""
from __future__ import annotations

from pathlib import Path

import httpx

from frazil.testing.server import HTTP_TIMEOUT_S
from tests.sdk.test_http import NODE_GET, PY_GET, fetch

DEFAULT_CAP = 6 * 1024 * 1024
# The platform's peak memory may grow by this much while a bomb is refused: the decoded bytes
# it holds (up to the cap) and some slack. Decoding a whole network chunk at once, as httpx
# does, expands 64 KiB of this bomb to 64 MiB in one call.
MEMORY_BOUND = 24 * 1024 * 1024


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def peak_growth(pid: int, action) -> tuple[object, int]:
    """Run `action`; answer its result and how far the process's peak RSS rose above what it
    used before (the peak is reset first: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = _kib(pid, "VmRSS")
    result = action()
    return result, _kib(pid, "VmHWM") - before


def bomb_server(server_factory, upstream):
    """A server with the default 6 MB response cap that may reach the upstream."""
    return server_factory(FRAZIL_HTTP_ALLOW=f"127.0.0.1:{upstream.port}")


class TestGzipBomb:
    def test_small_bomb_is_too_large(self, proxied, upstream, unique_name):
        """A ~1 KB gzip body that expands to 1 MiB passes the 100 kB cap: ResponseTooLarge,
        said to be about the decoded size."""
        proxied.deploy(unique_name, PY_GET)
        got = fetch(proxied, unique_name, f"{upstream.url}/bomb?mb=1")
        assert got["error"] == "ResponseTooLarge", got
        assert "more than 100000 bytes once decoded" in got["message"], got

    def test_bomb_is_refused_within_a_small_memory_bound(self, server_factory, upstream, unique_name):
        """A 128 KB gzip body that expands to 128 MiB stops at the 6 MB cap: the function gets
        ResponseTooLarge, the platform's peak memory grows by less than 24 MiB, and it goes on
        serving (the same function decodes an ordinary gzip answer right after)."""
        srv = bomb_server(server_factory, upstream)
        srv.deploy(unique_name, PY_GET)
        assert fetch(srv, unique_name, f"{upstream.url}/gzip?n=1000")["text"] == "0" * 1000  # warm
        got, growth = peak_growth(srv.process.pid, lambda: fetch(srv, unique_name, f"{upstream.url}/bomb?mb=128"))
        assert got["error"] == "ResponseTooLarge" and f"{DEFAULT_CAP} bytes once decoded" in got["message"], got
        assert growth < MEMORY_BOUND, f"the platform's peak memory grew by {growth / 2**20:.1f} MiB"
        assert fetch(srv, unique_name, f"{upstream.url}/gzip?n=2000000")["size"] == 2_000_000
        assert httpx.get(f"{srv.url}/healthz", timeout=HTTP_TIMEOUT_S).status_code == 200


class TestLayers:
    def test_two_layers_are_refused(self, server_factory, upstream, unique_name):
        """A 373-byte body gzip-compressed twice (Content-Encoding: gzip, gzip), which would
        expand to 128 MiB, is refused before decoding: EncodingRefused, saying why."""
        srv = bomb_server(server_factory, upstream)
        srv.deploy(unique_name, PY_GET)
        fetch(srv, unique_name, f"{upstream.url}/gzip?n=10")  # warm
        got, growth = peak_growth(srv.process.pid,
                                  lambda: fetch(srv, unique_name, f"{upstream.url}/bomb?mb=128&layers=2"))
        assert got["error"] == "EncodingRefused", got
        assert "encoded 2 times (Content-Encoding: gzip, gzip)" in got["message"], got
        assert "at most one layer" in got["message"]
        assert growth < MEMORY_BOUND, f"the platform's peak memory grew by {growth / 2**20:.1f} MiB"

    def test_two_headers_are_two_layers(self, proxied, upstream, unique_name):
        """Two Content-Encoding headers count as two layers, whatever their codings."""
        proxied.deploy(unique_name, PY_GET)
        got = fetch(proxied, unique_name, f"{upstream.url}/bomb?mb=1&layers=2&enc=gzip&enc=deflate")
        assert got["error"] == "EncodingRefused" and "gzip, deflate" in got["message"], got

    def test_node_function_gets_the_refusal(self, proxied, upstream, unique_name):
        """The refusal reaches a Node function as an SdkError with the same type and message."""
        proxied.deploy(unique_name, NODE_GET)
        got = fetch(proxied, unique_name, f"{upstream.url}/bomb?mb=1&layers=2")
        assert got["name"] == "SdkError" and got["error"] == "EncodingRefused", got
        assert "at most one layer" in got["message"]
