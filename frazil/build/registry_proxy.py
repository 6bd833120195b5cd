"""The forward proxy a dependency build reaches its registries through.

The build's network namespace has only `lo`. Its PID 1 listens on 127.0.0.1:PROXY_PORT in
there and hands the listening socket to the platform (frazil.sandbox.helper.build_jail, step 12); this class serves
it from the platform's event loop, so every connection the build accepts is made by the
platform, in the platform's network namespace, under these rules:
  - `CONNECT host:port` (HTTPS: TLS stays end to end, the proxy only relays bytes) and
    absolute-form plain HTTP requests (`GET http://host/path`), nothing else;
  - host must be a configured registry (registries.py) on port 80/443 or a configured port;
  - the host is resolved once and refused if ANY address is in a denied range
    (`denied_range`: loopback, private, link-local, shared, multicast, unspecified, cloud
    metadata, including IPv4 embedded in IPv6); the connection goes to a checked address.
    The rule is a deny list, not "global only": a registry mirror on a documentation range
    (203.0.113.0/24 on a test machine) stays reachable;
  - every refusal answers 403 with the reason and adds one line to the build log.
A plain HTTP request is sent upstream in origin form with `Connection: close` (one request
per connection, so a kept-alive connection cannot be re-aimed at another host).
Connections live no longer than the build: `close()` ends them all.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from typing import Callable

from frazil.build.registries import Registries
from frazil.sdk.proxy import CGNAT, METADATA, NAT64, IPAddress, resolve
from frazil.sdk.tunnel import relay, split_host_port

HEAD_LIMIT = 16 * 1024
CONNECT_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 64  # per build, in flight; more wait for accept
DROPPED_REQUEST_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}

DENIED_NETWORKS: tuple[tuple[str, object], ...] = (
    ("unspecified", ipaddress.ip_network("0.0.0.0/8")),
    ("private", ipaddress.ip_network("10.0.0.0/8")),
    ("shared (CGNAT)", CGNAT),
    ("loopback", ipaddress.ip_network("127.0.0.0/8")),
    ("link-local", ipaddress.ip_network("169.254.0.0/16")),
    ("private", ipaddress.ip_network("172.16.0.0/12")),
    ("private", ipaddress.ip_network("192.168.0.0/16")),
    ("IETF protocol assignments", ipaddress.ip_network("192.0.0.0/24")),
    ("benchmarking", ipaddress.ip_network("198.18.0.0/15")),
    ("multicast", ipaddress.ip_network("224.0.0.0/4")),
    ("reserved", ipaddress.ip_network("240.0.0.0/4")),
    ("unspecified", ipaddress.ip_network("::/128")),
    ("loopback", ipaddress.ip_network("::1/128")),
    ("private", ipaddress.ip_network("fc00::/7")),
    ("link-local", ipaddress.ip_network("fe80::/10")),
    ("site-local", ipaddress.ip_network("fec0::/10")),
    ("multicast", ipaddress.ip_network("ff00::/8")),
)


def denied_range(address: IPAddress) -> str | None:
    """The kind of range a build may never reach that `address` is in, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return denied_range(embedded)
    if address in METADATA:
        return "cloud metadata"
    for kind, network in DENIED_NETWORKS:
        if address.version == network.version and address in network:
            return kind
    return None


class Refused(Exception):
    """A request the proxy will not carry; the message is what the build log shows."""


class RegistryProxy:
    """Serves one build's proxy socket until `close()`."""

    def __init__(self, registries: Registries, log: Callable[[str], None]):
        self.registries = registries
        self.log = log
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.refused = 0

    async def serve(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self._server = await asyncio.start_server(self._client, sock=listener, limit=HEAD_LIMIT)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            async with self._slots:
                await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = (request_line.split(" ") + ["", "", ""])[:3]
        try:
            if method == "CONNECT":
                host, port = _host_port(target, 443)
                upstream = await self._open(host, port, f"CONNECT {target}")
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                first = b""
            elif target.lower().startswith("http://"):
                host, port, path = _split_absolute(target)
                upstream = await self._open(host, port, f"{method} {target}")
                first = _origin_request(method, path, version, header_lines, host, port)
            else:
                raise Refused(f"{method or 'an empty request'} {target}: only CONNECT and http:// requests are proxied")
        except Refused as exc:
            self.refused += 1
            self.log(f"build network: refused {exc}")
            body = f"frazil build proxy: {exc}\n".encode()
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            return
        up_reader, up_writer = upstream
        try:
            if first:
                up_writer.write(first)
            await asyncio.gather(relay(reader, up_writer), relay(up_reader, writer))
        finally:
            up_writer.close()

    async def _open(self, host: str, port: int, what: str):
        if not self.registries.allows(host, port):
            raise Refused(f"{what}: {host}:{port} is not a configured package registry "
                          f"({self.registries.describe()})")
        try:
            addresses = await resolve(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refused(f"{what}: cannot resolve {host}: {exc}") from None
        for address in addresses:
            kind = denied_range(address)
            if kind is not None:
                raise Refused(f"{what}: {host} resolves to {address}, a {kind} address")
        if not addresses:
            raise Refused(f"{what}: {host} has no address")
        address = sorted(addresses, key=lambda a: a.version)[0]
        try:
            return await asyncio.wait_for(asyncio.open_connection(str(address), port), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as exc:
            raise Refused(f"{what}: cannot connect to {host} ({address}): {exc or 'timed out'}") from None


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    try:
        return split_host_port(text, default_port)
    except ValueError as exc:
        raise Refused(str(exc)) from None


def _split_absolute(target: str) -> tuple[str, int, str]:
    rest = target[len("http://"):]
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        raise Refused(f"{target}: user info in a proxied URL")
    host, port = _host_port(authority, 80)
    return host, port, "/" + path if slash else "/"


def _origin_request(method: str, path: str, version: str, header_lines: list[str], host: str, port: int) -> bytes:
    lines = [f"{method} {path} {version or 'HTTP/1.1'}"]
    has_host = False
    for line in header_lines:
        if not line:
            continue
        name = line.split(":", 1)[0].strip().lower()
        if name in DROPPED_REQUEST_HEADERS:
            continue
        has_host |= name == "host"
        lines.append(line)
    if not has_host:
        lines.append(f"Host: {host}" + ("" if port == 80 else f":{port}"))
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
