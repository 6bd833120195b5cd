"""A lean ASGI path for the hottest routes: invoking a function, functions' HTTP endpoints
(`/fn/...`), and /healthz.

FastAPI's routing, dependency injection and middleware stack cost a few hundred µs per
request on this machine (bench/profile_server.py), more than the whole rest of a warm
invocation. So the outermost ASGI app matches these routes by string and calls the very
handlers their FastAPI routes document (`handle_invoke`, `endpoints.serve`, `health`,
`error_response`), endpoints behind the same CORS wrapper as there; every other request goes
to FastAPI untouched.
"""
from __future__ import annotations

import orjson
from starlette.requests import Request

from frazil.api import endpoints
from frazil.api.cors import PathCors
from frazil.api.clientaddr import scope_client
from frazil.api.errors import error_response
from frazil.api.health import health
from frazil.api.invoking import handle_invoke, read_event

INVOKE_PREFIX = "/v1/functions/"
INVOKE_SUFFIX = "/invoke"
FN_PREFIX = endpoints.PREFIX + "/"
JSON_HEADERS = [(b"content-type", b"application/json")]


class FastPath:
    def __init__(self, app):
        self.app = app  # the FastAPI application (it owns the lifespan and app.state)
        self._endpoint_app = None  # `_endpoint`, behind CORS when configured: made at first use

    def _endpoints(self):
        if self._endpoint_app is None:
            origins = self.app.state.platform.settings.cors_origins
            self._endpoint_app = PathCors(self._endpoint, origins) if origins else self._endpoint
        return self._endpoint_app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if method == "POST" and path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX):
                name = path[len(INVOKE_PREFIX):-len(INVOKE_SUFFIX)]
                if name and "/" not in name:
                    return await self._invoke(name, scope, receive, send)
            elif path.startswith(FN_PREFIX) and method in endpoints.METHODS and path[len(FN_PREFIX):].partition("/")[0]:
                return await self._endpoints()(scope, receive, send)
            elif method == "GET" and path == "/healthz":
                status, body, headers = await health(self.app.state.platform)
                return await _send_json(send, status, orjson.dumps(body), headers)
        await self.app(scope, receive, send)

    async def _invoke(self, name: str, scope, receive, send) -> None:
        platform = self.app.state.platform
        request = Request(scope, receive)
        try:
            mode, delay_s = "sync", None
            if scope["query_string"]:
                # Read as FastAPI reads the documented route's query (the last value wins, an
                # empty one counts), so that both paths judge the same `mode` and `delay_s`.
                mode = request.query_params.get("mode", "sync")
                delay_s = request.query_params.get("delay_s")
            body = await read_event(request, platform.settings, mode)
            client = scope_client(scope, platform.settings.trusted_proxies)
            status, payload = await handle_invoke(platform, name, mode, request.headers.get("authorization"), body,
                                                  delay_s, client)
        except Exception as exc:  # noqa: BLE001 - refusals and bugs alike become JSON errors
            await error_response(exc, platform)(scope, receive, send)
            return
        await _send_json(send, status, payload)


    async def _endpoint(self, scope, receive, send) -> None:
        """`/fn/{name}` and `/fn/{name}/{path}`, as frazil.api.endpoints routes them."""
        platform = self.app.state.platform
        name, _, path = scope["path"][len(FN_PREFIX):].partition("/")
        scope["app"] = self.app  # what the handler reads the platform from, as under FastAPI
        try:
            response = await endpoints.serve(name, path, Request(scope, receive))
        except Exception as exc:  # noqa: BLE001 - refusals and bugs alike become JSON errors
            response = error_response(exc, platform)
        await response(scope, receive, send)


async def _send_json(send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()] if headers else []
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})
