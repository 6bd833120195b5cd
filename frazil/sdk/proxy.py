"""The SDK's outbound HTTP proxy: functions have no network of their own, so every request
they make is made here, on their behalf, under the platform's rules:

- only `http` and `https`;
- the host is resolved with the event loop's resolver and the request is refused if ANY of
  its addresses is loopback, private, link-local, multicast, reserved, unspecified, shared
  (CGNAT) or a cloud metadata address — unless `FRAZIL_HTTP_ALLOW` lets that destination
  through (`AllowList`);
- the connection goes to an address that was checked, never to a second resolution (DNS
  rebinding): the URL keeps its host name (so Host, SNI and certificate checks stay right)
  and `_PinnedBackend`, the connection pool's network backend, connects to the address the
  check pinned for that host and port in the request's context, and to nothing else;
- redirects are followed here, one hop at a time, each hop checked like the first;
- the whole request (redirects and body included) has a timeout, capped by the time the
  invocation has left; the response body is decoded here, one content coding at most, and
  capped in size while it is decoded (frazil.sdk.decoding).

How many requests one instance may have in flight is the caller's business (`SdkHost` holds
a semaphore per instance); the proxy itself is shared by every instance, with one pool of
kept-alive connections.
"""
from __future__ import annotations

import asyncio
import base64
import contextvars
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass, field

import httpcore
import httpx

from frazil.errors import BadRequest
from frazil.sdk.decoding import BodyDecoder, content_codings
from frazil.sdk.errors import HttpDenied, HttpFailed, HttpTimeout, ResponseTooLarge
from frazil.settings import ENV_HTTP_ALLOW, Settings

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = {"http": 80, "https": 443}
REDIRECTS = {301, 302, 303, 307, 308}
DEFAULT_TIMEOUT_S = 10.0
USER_AGENT = "frazil-sdk/1"

# Cloud metadata services, named for the error message (both are inside denied ranges too).
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")

# Headers a function may not set: the proxy owns the connection and the framing.
HOP_HEADERS = {"host", "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te",
               "trailer", "transfer-encoding", "upgrade", "content-length"}


def special_range(address: IPAddress) -> str | None:
    """The kind of denied range `address` is in, or None for an ordinary public address.
    IPv4 embedded in IPv6 (mapped, 6to4, NAT64) is judged as the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # the kernel connects to the IPv4 address itself
            return special_range(address.ipv4_mapped)
        embedded = address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and special_range(embedded) is not None:
            return special_range(embedded)
    if address in METADATA:
        return "cloud metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        return "shared (CGNAT)"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-global"
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every IPv4 and IPv6 address `host` has for a TCP connection to `port`, in the resolver's
    order, each once (scope ids dropped). Raises socket.gaierror or UnicodeError."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
    return addresses


@dataclass(frozen=True)
class AllowList:
    """`FRAZIL_HTTP_ALLOW`: destinations let through even though they are in a denied range.

    Entries, comma-separated: `host:port` or `[v6]:port` (that host name or address, that port),
    a bare host name or address (any port), or a CIDR network (any port). A host name entry
    admits whatever the name resolves to.
    """

    networks: tuple[IPNetwork, ...] = ()
    addresses: frozenset[tuple[IPAddress, int]] = frozenset()  # (address, port)
    hosts: frozenset[tuple[str, int | None]] = frozenset()  # (lower-case name, port or any)

    @classmethod
    def parse(cls, entries) -> "AllowList":
        networks, addresses, hosts = [], set(), set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                kind, value = _parse_entry(entry)
            except ValueError as exc:
                raise ValueError(f"{ENV_HTTP_ALLOW} entry {entry!r}: {exc}; use host:port, an address "
                                 "or a CIDR network like 10.0.0.0/8") from None
            {"network": networks.append, "address": addresses.add, "host": hosts.add}[kind](value)
        return cls(tuple(networks), frozenset(addresses), frozenset(hosts))

    def permits(self, host: str, port: int, address: IPAddress) -> bool:
        if (host, port) in self.hosts or (host, None) in self.hosts:
            return True
        if (address, port) in self.addresses:
            return True
        return any(address in network for network in self.networks if network.version == address.version)


def _parse_entry(entry: str):
    if "/" in entry:
        return "network", ipaddress.ip_network(entry, strict=False)
    try:
        return "network", ipaddress.ip_network(entry)  # a bare address: any port
    except ValueError:
        pass
    if entry.startswith("["):
        host, sep, port = entry[1:].partition("]:")
        if not sep:
            raise ValueError("an IPv6 address with a port is written [address]:port")
        return "address", (ipaddress.ip_address(host), _port(port))
    host, sep, port = entry.rpartition(":")
    if not sep:
        return "host", (_host_name(entry), None)
    try:
        return "address", (ipaddress.ip_address(host), _port(port))
    except ValueError:
        return "host", (_host_name(host), _port(port))


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return port


def _host_name(text: str) -> str:
    name = text.strip().rstrip(".").lower()
    if not name or any(c in name for c in " /?#@[]"):
        raise ValueError("not a host name")
    return name


# --- connecting only to checked addresses ---------------------------------------------------

# (host, port) -> the checked address to connect to, for the request being sent in this context.
_PINNED: contextvars.ContextVar[dict[tuple[str, int], str]] = contextvars.ContextVar("frazil_http_pinned")


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects where the proxy's check pinned the host, never anywhere unchecked. The pool
    creates connections inside the requesting task, so the pin is in its context."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        address = _PINNED.get({}).get((host, port))
        if address is None:  # cannot happen through HttpProxy.request: refuse rather than resolve
            raise httpcore.ConnectError(f"{host}:{port} was not checked by the proxy")
        return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("the SDK proxy does not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream) -> None:
        self._stream = stream

    async def __aiter__(self):
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            await self._stream.aclose()


class _PinnedTransport(httpx.AsyncBaseTransport):
    """httpx on top of an httpcore pool whose network backend is `_PinnedBackend`."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=1024, max_keepalive_connections=128,
            keepalive_expiry=30.0, network_backend=_PinnedBackend())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                             target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream, extensions=request.extensions)
        response = await self._pool.handle_async_request(core)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_ResponseStream(response.stream), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


# --- the proxy ------------------------------------------------------------------------------

DEFAULT_HEADERS = (("User-Agent", USER_AGENT), ("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"))


def _with_defaults(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    present = {name.lower() for name, _ in headers}
    return [*((k, v) for k, v in DEFAULT_HEADERS if k.lower() not in present), *headers]


@dataclass
class OutboundRequest:
    """What a function asked for, validated (see `from_message`)."""

    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    follow_redirects: bool = True

    @classmethod
    def from_message(cls, message: dict, max_body: int) -> "OutboundRequest":
        method, url = message.get("method", "GET"), message.get("url")
        if not isinstance(method, str) or not method.isascii() or not method.isalpha():
            raise BadRequest(f"an HTTP method is a word like GET or POST, not {method!r}")
        if not isinstance(url, str) or not url:
            raise BadRequest("http.request needs a url")
        headers = []
        for pair in message.get("headers") or []:
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(x, str) for x in pair)):
                raise BadRequest("headers are [name, value] pairs of strings")
            if pair[0].lower() not in HOP_HEADERS:
                headers.append((pair[0], pair[1]))
        body = None
        if message.get("body") is not None:
            if not isinstance(message["body"], str):
                raise BadRequest("body must be a string")
            body = message["body"].encode()
        elif message.get("body_b64") is not None:
            try:
                body = base64.b64decode(message["body_b64"], validate=True)
            except (ValueError, TypeError):
                raise BadRequest("body_b64 is not base64") from None
        if body is not None and len(body) > max_body:
            raise BadRequest(f"the request body is {len(body)} bytes; the limit is {max_body}")
        timeout = message.get("timeout")
        if timeout is None:
            timeout = DEFAULT_TIMEOUT_S
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise BadRequest(f"timeout must be a positive number of seconds, not {timeout!r}")
        return cls(method.upper(), url, headers, body, float(timeout), bool(message.get("follow_redirects", True)))


class HttpProxy:
    def __init__(self, settings: Settings, *, ssl_context: ssl.SSLContext | None = None):
        self.allow = AllowList.parse(settings.http_allow)
        self.max_response_bytes = settings.http_max_response_bytes
        self.max_request_bytes = settings.http_max_request_bytes
        self.max_redirects = settings.http_max_redirects
        self._ssl = ssl_context or httpx.create_ssl_context()
        # The transport is used without an httpx.Client on purpose: a client keeps a cookie
        # jar, which would carry one function's cookies into another's requests.
        self._transport: _PinnedTransport | None = None

    def _pool(self) -> _PinnedTransport:
        if self._transport is None:  # made on first use, inside the running loop
            self._transport = _PinnedTransport(self._ssl)
        return self._transport

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def request(self, req: OutboundRequest, *, time_left_s: float) -> dict:
        """Send `req` and answer the wire form of the final response:
        {"status", "url", "headers": [[name, value]...], "text" | "base64"}."""
        timeout = min(req.timeout_s, time_left_s)
        if timeout <= 0:
            raise HttpTimeout("the invocation has no time left for an HTTP request")
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(req)
        except TimeoutError:
            raise HttpTimeout(f"{req.method} {req.url}: no complete answer within {timeout:g} s") from None

    async def _follow(self, req: OutboundRequest) -> dict:
        url = self._url(req.url)
        method, headers, body = req.method, list(req.headers), req.body
        for hop in range(self.max_redirects + 1):
            response = await self._send(method, url, headers, body)
            location = response.headers.get("location")
            if not (req.follow_redirects and response.status_code in REDIRECTS and location):
                return await self._read(response, url)
            await response.aclose()
            if hop == self.max_redirects:
                break
            try:
                target = self._url(str(url.join(location)))
            except (httpx.InvalidURL, ValueError) as exc:
                raise HttpFailed(f"{url} redirected to an invalid URL {location!r}: {exc}") from None
            if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                method, body = ("HEAD" if method == "HEAD" else "GET"), None
                headers = [(k, v) for k, v in headers if not k.lower().startswith("content-")]
            if (target.scheme, target.host, target.port) != (url.scheme, url.host, url.port):
                headers = [(k, v) for k, v in headers if k.lower() not in ("authorization", "cookie")]
            url = target
        raise HttpFailed(f"{req.url}: more than {self.max_redirects} redirects")

    @staticmethod
    def _url(text: str) -> httpx.URL:
        try:
            url = httpx.URL(text)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise BadRequest(f"not a valid URL: {text!r} ({exc})") from None
        if url.scheme not in SCHEMES:
            raise HttpDenied(f"only http and https URLs are allowed, not {text!r}")
        if not url.host:
            raise BadRequest(f"the URL {text!r} has no host")
        return url

    async def _send(self, method: str, url: httpx.URL, headers, body) -> httpx.Response:
        host = url.raw_host.decode("ascii").lower()
        port = url.port or SCHEMES[url.scheme]
        address = await self.checked_address(host, port)
        _PINNED.set({(url.raw_host.decode("ascii"), port): address})
        request = httpx.Request(method, url, headers=_with_defaults(headers), content=body)
        try:
            response = await self._pool().handle_async_request(request)
            response.request = request
            return response
        except (httpcore.TimeoutException, httpx.TimeoutException) as exc:
            raise HttpTimeout(f"{method} {url}: timed out ({exc or type(exc).__name__})") from None
        except (httpcore.ConnectError, httpx.ConnectError, ConnectionError) as exc:
            raise HttpFailed(f"cannot connect to {host}:{port}: {exc or type(exc).__name__}") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, httpx.HTTPError,
                ssl.SSLError, OSError) as exc:
            raise HttpFailed(f"{method} {url}: {exc or type(exc).__name__}") from None

    async def checked_address(self, host: str, port: int) -> str:
        """Resolve `host` once, check every address, and answer the one to connect to."""
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = await self._resolve(host, port)
        for address in addresses:
            kind = special_range(address)
            if kind is not None and not self.allow.permits(host, port, address):
                shown = host if host == str(address) else f"{host} ({address})"
                raise HttpDenied(f"the destination {shown}:{port} is a {kind} address, which functions may not "
                                 f"reach; the platform's operator can allow it with {ENV_HTTP_ALLOW}")
        # IPv4 first: a host with an AAAA record is not always reachable over IPv6.
        return str(sorted(addresses, key=lambda a: a.version)[0])

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            addresses = await resolve(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise HttpFailed(f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise HttpFailed(f"{host} has no IPv4 or IPv6 address")
        return addresses

    async def _read(self, response: httpx.Response, url: httpx.URL) -> dict:
        """The body, decoded here within the cap (frazil.sdk.decoding): never by httpx, whose
        decoders expand a whole network chunk at once, with no limit."""
        limit = self.max_response_bytes
        chunks = []
        try:
            decoder = BodyDecoder(content_codings(response.headers.get_list("content-encoding")), limit,
                                  what=f"the answer of {url}")
            try:
                declared = int(response.headers.get("content-length", "-1"))
            except ValueError:
                declared = -1
            if declared > limit:
                raise ResponseTooLarge(f"{url} answered {declared} bytes; the limit is {limit}", limit=limit)
            async for raw in response.aiter_raw():
                for piece in decoder.feed(raw):
                    chunks.append(piece)
                    await asyncio.sleep(0)  # a long run of pieces lets other requests be served
            chunks.extend(decoder.finish())
        except (httpcore.TimeoutException, httpx.TimeoutException) as exc:
            raise HttpTimeout(f"{url}: timed out reading the answer ({exc or type(exc).__name__})") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpx.HTTPError, ssl.SSLError, OSError) as exc:
            raise HttpFailed(f"{url}: the answer broke off: {exc or type(exc).__name__}") from None
        finally:
            await response.aclose()
        content = b"".join(chunks)
        headers = response.headers.multi_items()
        if decoder.decodes:  # the body was decoded: say so
            headers = [(k, v) for k, v in headers if k.lower() not in ("content-encoding", "content-length")]
        answer = {"status": response.status_code, "url": str(url), "headers": [[k, v] for k, v in headers]}
        try:
            answer["text"] = content.decode("utf-8")
        except UnicodeDecodeError:
            answer["base64"] = base64.b64encode(content).decode("ascii")
        return answer
