"""A lean ASGI path for the hottest routes: invoking a function, and /healthz.

FastAPI's routing, dependency injection and middleware stack cost a few hundred µs per
request on this machine (bench/profile_server.py), more than the whole rest of a warm
invocation. So the outermost ASGI app matches these two routes by string and calls the very
handlers their FastAPI routes document (`handle_invoke`, `health`, `error_response`); every
other request goes to FastAPI untouched.
"""
from __future__ import annotations

from urllib.parse import parse_qs

import orjson
from starlette.requests import Request

from frazil.api.bodies import read_limited
from frazil.api.errors import error_response
from frazil.api.health import health
from frazil.api.invoking import handle_invoke

INVOKE_PREFIX = "/v1/functions/"
INVOKE_SUFFIX = "/invoke"
JSON_HEADERS = [(b"content-type", b"application/json")]


class FastPath:
    def __init__(self, app):
        self.app = app  # the FastAPI application (it owns the lifespan and app.state)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if method == "POST" and path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX):
                name = path[len(INVOKE_PREFIX):-len(INVOKE_SUFFIX)]
                if name and "/" not in name:
                    return await self._invoke(name, scope, receive, send)
            elif method == "GET" and path == "/healthz":
                return await _send_json(send, 200, orjson.dumps(health(self.app.state.platform)))
        await self.app(scope, receive, send)

    async def _invoke(self, name: str, scope, receive, send) -> None:
        platform = self.app.state.platform
        request = Request(scope, receive)
        try:
            body = await read_limited(request, platform.settings.max_payload_bytes, "the event")
            mode = "sync"
            if scope["query_string"]:
                mode = parse_qs(scope["query_string"].decode("latin-1")).get("mode", ["sync"])[-1]
            status, payload = await handle_invoke(platform, name, mode, request.headers.get("authorization"), body)
        except Exception as exc:  # noqa: BLE001 - refusals and bugs alike become JSON errors
            await error_response(exc)(scope, receive, send)
            return
        await _send_json(send, status, payload)


async def _send_json(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
