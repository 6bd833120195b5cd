"""`Egress`: the proxy ordinary HTTP clients in an instance reach through HTTP_PROXY/HTTPS_PROXY.

Code written for other platforms uses `requests`, `urllib`, `axios`..., not frazil's SDK. Inside
an instance those clients find HTTP_PROXY, HTTPS_PROXY (and the lower-case names) set to
http://127.0.0.1:EGRESS_PORT, where the platform listens *inside the instance's own network
namespace* (frazil.sandbox.listen): a connection there comes from that instance and no other,
so the listener itself says whose it is, and no instance can use another's.

What a connection may ask, under the SDK's rules and through the SDK's own pieces:
- an absolute-form request (`GET http://host/path`, or `https://...` as axios sends it): made by
  `HttpProxy.request` exactly like `frazil_sdk.http` (allow-list, SSRF checks on every address,
  the connection pinned to the checked address, the body decoded within its cap), without
  following redirects (the client follows them, each through here again), and answered with
  `Connection: close`;
- `CONNECT host:port` (HTTPS tunnelled end to end: TLS is between the function and the
  destination; this side only relays bytes): the destination is checked by the same
  `HttpProxy.checked_address`; a port other than 443 needs the allow-list too (a tunnel carries
  any protocol: the platform must not become a relay for mail or anything else);
- at most `http_max_in_flight` requests and tunnels of one invocation at once, shared with its SDK
  HTTP calls (the SDK host's http lane: more wait, beyond its waiting room they are refused), and
  no more connections open at once than that lane admits (a connection beyond is answered 429);
- nothing while no invocation runs on the instance (503), and nothing beyond the invocation that
  was running when the request came: it is cut off at that invocation's deadline or end.
A refusal is an HTTP answer naming the reason (403 for a destination the rules deny, naming
FRAZIL_HTTP_ALLOW; for CONNECT the 403 comes instead of the 200), never a hang. Every request
is logged with its invocation id.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import http
import ipaddress
import logging
import time
import weakref

from frazil.errors import BadRequest, FrazilError, PayloadTooLarge
from frazil.sandbox.listen import listen_in_netns
from frazil.sdk.errors import HttpDenied, HttpFailed, HttpTimeout, TooManyCalls
from frazil.sdk.proxy import HOP_HEADERS, OutboundRequest
from frazil.sdk.tunnel import relay, split_host_port
from frazil.settings import ENV_HTTP_ALLOW

log = logging.getLogger(__name__)

EGRESS_ADDRESS = "127.0.0.1"
EGRESS_PORT = 3128
HEAD_LIMIT = 16 * 1024
TUNNEL_PORTS = frozenset({443})  # other ports need an allow-list entry
PROXY_URL = f"http://{EGRESS_ADDRESS}:{EGRESS_PORT}"
# Set in every instance that has the egress listener. No NO_PROXY: a URL means what it means
# to frazil_sdk.http (127.0.0.1 is the platform's host, reachable only through the allow-list);
# a function that serves itself on its own loopback sets NO_PROXY in its environment.
PROXY_ENV = {"HTTP_PROXY": PROXY_URL, "HTTPS_PROXY": PROXY_URL, "http_proxy": PROXY_URL, "https_proxy": PROXY_URL}


class NoInvocation(FrazilError):
    status = 503
    type = "NoInvocation"


class LengthRequired(FrazilError):
    status = 411
    type = "LengthRequired"


class Egress:
    """One listener per instance (opened after the runtime said hello, while it loads its
    handler; closed with it)."""

    def __init__(self, host):
        self._host = host  # frazil.sdk.host.SdkHost: the proxy and the lanes
        self._servers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # instance -> (server, tasks)

    def environment(self, sandbox) -> dict[str, str]:
        """The environment the runtimes of `sandbox` get: the proxy's, when each instance has
        a network namespace of its own (empty otherwise: a sandbox without isolation has the
        host's network). Given with init, before `open()` listens."""
        return dict(PROXY_ENV) if sandbox.own_network else {}

    async def open(self, instance) -> None:
        """Listen in `instance`'s network namespace (one `environment` gave the proxy's
        variables to). Never raises: an instance it cannot serve runs without a proxy (its
        clients' connections are refused: its namespace has no other way out either)."""
        pidfd = instance.proc.pidfd
        try:
            if pidfd is None:
                raise OSError("the instance has exited")
            listener = listen_in_netns(pidfd, EGRESS_ADDRESS, EGRESS_PORT)
        except Exception as exc:  # noqa: BLE001 - the instance still runs, without a proxy
            if instance.alive:
                log.warning("instance %s gets no HTTP proxy: cannot listen in its network namespace: %s",
                            instance.id, exc)
            return
        tasks: set[asyncio.Task] = set()
        # Connections held at once, idle ones included (each holds a task and up to HEAD_LIMIT
        # bytes): as many as the invocation's http lane admits, running and waiting.
        most = self._host.settings.http_max_in_flight + self._host.settings.sdk_max_waiting

        async def client(reader, writer):
            if len(tasks) >= most:
                self._count(instance, "refused")
                await _answer(writer, 429, f"this instance has {len(tasks)} connections to the proxy open; "
                                           "close some first")
                writer.close()
                return
            task = asyncio.current_task()
            tasks.add(task)
            try:
                await self._connection(instance, reader, writer)
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(client, sock=listener, limit=HEAD_LIMIT)
        if not instance.alive:  # destroyed meanwhile: close() came before there was anything to close
            server.close()
            return
        self._servers[instance] = (server, tasks)

    def close(self, instance) -> None:
        """Stop listening for `instance` and cut its connections (it is being destroyed)."""
        entry = self._servers.pop(instance, None)
        if entry is None:
            return
        server, tasks = entry
        server.close()
        for task in list(tasks):
            task.cancel()

    # --- one connection -------------------------------------------------------------------

    async def _connection(self, instance, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(instance, reader, writer)
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            pass  # the function (or the destination) hung up
        except Exception:  # noqa: BLE001 - a bug here: the function sees a closed connection, never a hang
            log.exception("egress proxy failed serving instance %s", instance.id)
        finally:
            writer.close()

    async def _serve(self, instance, reader, writer) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _time_left(instance) or 10.0)
        except asyncio.LimitOverrunError:
            self._count(instance, "refused")
            return await _answer(writer, 431, f"the request head is larger than {HEAD_LIMIT} bytes")
        except (asyncio.TimeoutError, asyncio.IncompleteReadError):
            return
        request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        method, _, rest = request_line.partition(" ")
        target = rest.rpartition(" ")[0] or rest
        invocation, token, ended = instance.current_invocation, instance.sdk_token, instance.invocation_done
        what = f"{method} {target}"[:300]
        try:
            if not instance.invocation_running or token is None or ended is None or ended.done():
                raise NoInvocation("no invocation is running on this instance: HTTP requests can be made only while "
                                   "the function's invocation runs")
            lane = self._host.http_lane(instance, token)
            if not lane.admit():
                raise TooManyCalls(f"{lane.running + lane.waiting} HTTP requests of this invocation are in flight or "
                                   f"waiting already; request refused")
            async with lane.turn():
                work = asyncio.ensure_future(self._carry(instance, method, target, lines, reader, writer))
                try:
                    finished, _ = await asyncio.wait({work, ended}, timeout=_time_left(instance),
                                                     return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not work.done():
                        work.cancel()
                        with contextlib.suppress(BaseException):
                            await work
                if work not in finished:
                    log.info("egress %s cut off: invocation %s ended", what, invocation)
                    return
                outcome = work.result()
        except FrazilError as exc:
            log.info("egress %s for invocation %s of %s refused: %s", what, invocation, instance.version.function,
                     exc.message)
            self._count(instance, "refused")
            return await _answer(writer, exc.status, exc.message, exc.type)
        log.info("egress %s for invocation %s of %s: %s", what, invocation, instance.version.function, outcome)
        self._count(instance, "carried")

    def _count(self, instance, outcome: str) -> None:
        metrics = getattr(self._host._platform, "metrics", None)
        if metrics is not None:
            metrics.egress.labels(instance.version.function, outcome).inc()

    async def _carry(self, instance, method: str, target: str, lines: list[str], reader, writer) -> str:
        """Serve the request; answers what happened, for the log. Refusals raise FrazilError
        before anything was written."""
        if method == "CONNECT":
            return await self._tunnel(instance, target, reader, writer)
        if target.lower().startswith(("http://", "https://")):
            return await self._forward(instance, method, target, lines, reader, writer)
        raise BadRequest(f"{method} {target[:200]}: this is a forward proxy: send absolute URLs (http://...) or "
                         "CONNECT host:port")

    async def _forward(self, instance, method, target, lines, reader, writer) -> str:
        if not method.isascii() or not method.isalpha():
            raise BadRequest(f"{method[:40]!r} is not an HTTP method")
        headers = []
        length = 0
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest(f"a malformed header line: {line[:100]!r}")
            name, value = name.strip(), value.strip()
            if name.lower() == "content-length":
                if not value.isdigit():
                    raise BadRequest(f"Content-Length {value[:40]!r} is not a number")
                length = int(value)
            elif name.lower() == "transfer-encoding" and value.lower() != "identity":
                raise LengthRequired("a request body must come with Content-Length (chunked bodies are not proxied)")
            if name.lower() not in HOP_HEADERS:
                headers.append((name, value))
        proxy = self._host.proxy
        if length > proxy.max_request_bytes:
            raise PayloadTooLarge(f"the request body is {length} bytes; the limit is {proxy.max_request_bytes}")
        body = await reader.readexactly(length) if length else None
        left = _time_left(instance)
        request = OutboundRequest(method.upper(), target, headers, body, left, follow_redirects=False)
        answer = await proxy.request(request, time_left_s=left)
        content = answer["text"].encode() if "text" in answer else _b64(answer["base64"])
        status = answer["status"]
        out = [f"HTTP/1.1 {status} {_reason(status)}"]
        for name, value in answer["headers"]:
            if name.lower() not in HOP_HEADERS:
                out.append(f"{name}: {value}")
        out += [f"Content-Length: {len(content)}", "Connection: close"]
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1", "replace") + content)
        await writer.drain()
        return f"{status}, {len(content)} bytes"

    async def _tunnel(self, instance, target, reader, writer) -> str:
        try:
            host, port = split_host_port(target, 443)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        host = host.lower()
        if not host or not 0 < port < 65536:
            raise BadRequest(f"CONNECT {target[:200]}: not a host and a port from 1 to 65535")
        proxy = self._host.proxy
        address = await proxy.checked_address(host, port)
        if port not in TUNNEL_PORTS and not proxy.allow.permits(host, port, ipaddress.ip_address(address)):
            raise HttpDenied(f"CONNECT {host}:{port}: tunnels go to port 443 only; the platform's operator can allow "
                             f"another destination with {ENV_HTTP_ALLOW}")
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(address, port),
                                                          _time_left(instance))
        except asyncio.TimeoutError:
            raise HttpTimeout(f"CONNECT {host}:{port}: no connection before the invocation's deadline") from None
        except OSError as exc:
            raise HttpFailed(f"cannot connect to {host}:{port}: {exc or type(exc).__name__}") from None
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(relay(reader, up_writer), relay(up_reader, writer))
        finally:
            up_writer.close()
        return f"tunnel to {address}:{port} closed"


def _time_left(instance) -> float:
    deadline = getattr(instance, "deadline", None)
    return max(0.0, deadline - time.monotonic()) if deadline is not None else 0.0


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


async def _answer(writer: asyncio.StreamWriter, status: int, message: str, error_type: str = "") -> None:
    body = f"frazil egress proxy: {message}\n".encode()
    head = [f"HTTP/1.1 {status} {_reason(status)}", "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}", "Connection: close"]
    if error_type:
        head.append(f"X-Frazil-Error: {error_type}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    with contextlib.suppress(OSError, ConnectionError):
        await writer.drain()

