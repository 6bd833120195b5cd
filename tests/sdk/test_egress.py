"""`Egress` serving one connection (frazil.sdk.egress), in process: what it answers when no
invocation runs, and that a request of an invocation does not outlive it. The instance is a
stand-in holding only the fields the proxy reads; the proxy, the lanes and the sockets are real."""
from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace

from frazil.sdk.egress import Egress
from frazil.sdk.host import SdkHost
from frazil.settings import Settings


class StandIn:
    """An instance as the proxy sees it (weak-referenceable, like the real one)."""

    def __init__(self, *, running: bool, loop):
        self.id, self.version, self.proc = "i1", SimpleNamespace(function="f"), SimpleNamespace()
        self.current_invocation = "inv-1" if running else None
        self.invocation_running = running
        self.sdk_token = "tok" if running else None
        self.deadline = time.monotonic() + 30 if running else None
        self.invocation_done = loop.create_future() if running else None



async def connect(egress: Egress, instance):
    """A socket pair whose far end the egress serves as if the instance had connected."""
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=theirs)
    task = asyncio.ensure_future(egress._connection(instance, reader, writer))
    r, w = await asyncio.open_connection(sock=ours)
    return r, w, task


async def test_no_invocation_running_is_503():
    egress = Egress(SdkHost(SimpleNamespace(settings=Settings(), data=None)))
    instance = StandIn(running=False, loop=asyncio.get_running_loop())
    r, w, task = await connect(egress, instance)
    w.write(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
    answer = await r.read()
    await task
    assert answer.startswith(b"HTTP/1.1 503 ") and b"no invocation is running" in answer


async def test_a_request_is_cut_when_its_invocation_ends():
    """A tunnel to a server that never answers is closed as soon as the invocation ends."""
    egress = Egress(SdkHost(SimpleNamespace(settings=Settings(http_allow=("127.0.0.1",)), data=None)))
    instance = StandIn(running=True, loop=asyncio.get_running_loop())
    accepted = asyncio.Event()

    async def silent(reader, writer):
        accepted.set()
        await reader.read()  # until the proxy hangs up

    upstream = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    try:
        r, w, task = await connect(egress, instance)
        w.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        assert (await r.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        await accepted.wait()
        instance.invocation_done.set_result(None)
        await asyncio.wait_for(task, 10)
        assert await r.read() == b""  # closed by the proxy
    finally:
        upstream.close()
        await upstream.wait_closed()


async def test_requests_share_the_invocations_http_lane():
    """With one request in flight and no waiting room, a second tunnel is refused (429) while the
    first holds the lane; after it closes, the next one is carried."""
    settings = Settings(http_allow=("127.0.0.1",), http_max_in_flight=1, sdk_max_waiting=0)
    egress = Egress(SdkHost(SimpleNamespace(settings=settings, data=None)))
    instance = StandIn(running=True, loop=asyncio.get_running_loop())

    async def echo(reader, writer):
        writer.write(await reader.read(5))
        await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    connect_line = f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode()
    try:
        r1, w1, first = await connect(egress, instance)
        w1.write(connect_line)
        assert (await r1.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        r2, w2, second = await connect(egress, instance)
        w2.write(connect_line)
        assert (await r2.read()).startswith(b"HTTP/1.1 429 ")
        w1.write(b"hello")
        assert await r1.read() == b"hello"  # the upstream answered and hung up
        w1.close()  # both ends closed: the tunnel ends and gives its place back
        await asyncio.wait_for(first, 10)
        r3, w3, third = await connect(egress, instance)
        w3.write(connect_line)
        assert (await r3.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        w3.close()
        await asyncio.wait_for(third, 10)
        await second
    finally:
        upstream.close()
        await upstream.wait_closed()
