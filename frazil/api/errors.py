"""Every error becomes a JSON body with "success": false here, and nowhere else.

- A `FrazilError` (a refusal) answers its own status.
- An outage of the platform's own resources (frazil.outage: the database unreachable, the
  disk full) answers 503 with Retry-After and a message naming the cause, and is reported to
  the health monitor, so /healthz says `degraded` while it lasts.
- The database refusing a character the caller sent (U+0000 in a URL parameter, say) is 400.
- Anything else is a bug: logged, and 500.

Unexpected exceptions are caught by `CatchAll`, an ASGI middleware inside Starlette's
ServerErrorMiddleware, and never re-raised. (A handler registered for `Exception` runs in
ServerErrorMiddleware, which re-raises after answering; uvicorn then closes the connection,
so a keep-alive client lost its connection after every 500.)
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from frazil.api.responses import JSONResponse
from frazil.errors import FrazilError
from frazil.outage import RETRY_AFTER_S, classify
from frazil.store.textcodec import refused_character

log = logging.getLogger(__name__)


def error_body(status: int, type_: str, message: str, headers: dict[str, str] | None = None,
               **details) -> JSONResponse:
    error = {"type": type_, "message": message, **details}
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if "retry_after_s" in details:  # a 429 says when to come back, in the header clients read
        headers["Retry-After"] = str(details["retry_after_s"])
    elif status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return JSONResponse({"success": False, "message": message, "error": error}, status_code=status,
                        headers=headers)


def error_response(exc: Exception, platform=None) -> JSONResponse:
    """The response for a platform refusal, an outage (503), or a 500 for anything unexpected
    (logged). `platform`, when given, hears of outages (its health monitor)."""
    if isinstance(exc, FrazilError):
        return error_body(exc.status, exc.type, exc.message, **exc.details)
    if refused_character(exc):
        return error_body(400, "BadRequest", "the request holds a character the database cannot store "
                                             "(U+0000); remove it")
    outage = classify(exc)
    if outage is not None:
        monitor = getattr(platform, "health", None)
        if monitor is not None:
            monitor.report(outage)
        return error_body(503, "ServiceUnavailable", outage.message, cause=outage.cause.value)
    log.error("unhandled error", exc_info=exc)
    return error_body(500, "InternalError", f"internal error: {type(exc).__name__}")


class CatchAll:
    """Answers any exception a route lets escape with `error_response`, without re-raising it
    (see the module docstring). After the response has started nothing can be answered: the
    error is logged and the connection ends with the incomplete response, as it must."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - this is the one place they end
            if started:
                log.error("error after the response started", exc_info=exc)
                return
            platform = getattr(scope.get("app") and scope["app"].state, "platform", None)
            await error_response(exc, platform)(scope, receive, send)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path. (Starlette's 405 names only the
    methods of the first route matching the path; FastAPI makes one route per method.)"""
    methods: set[str] = set()
    scope = {**request.scope, "method": "GET"}
    for route in _leaf_routes(request.app.router.routes):
        if getattr(route, "methods", None) and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


def _leaf_routes(routes):
    # FastAPI keeps an included router's routes behind one entry (its `original_router`).
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _leaf_routes(inner.routes) if inner is not None else (route,)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FrazilError)
    async def _frazil(_: Request, exc: FrazilError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()
        )
        return error_body(422, "ValidationError", f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        names = {404: "NotFound", 405: "MethodNotAllowed", 401: "Unauthorized", 403: "Forbidden"}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_body(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail),
                          headers=headers)

    app.add_middleware(CatchAll)
