"""Every error becomes a JSON body with "success": false here, and nowhere else."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from frazil.api.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from frazil.errors import FrazilError

log = logging.getLogger(__name__)


def error_body(status: int, type_: str, message: str, **details) -> JSONResponse:
    error = {"type": type_, "message": message, **details}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"success": False, "message": message, "error": error}, status_code=status,
                          headers=headers)


def error_response(exc: Exception) -> JSONResponse:
    """The response for a platform refusal, or a 500 for anything unexpected (logged)."""
    if isinstance(exc, FrazilError):
        return error_body(exc.status, exc.type, exc.message, **exc.details)
    log.error("unhandled error", exc_info=exc)
    return error_body(500, "InternalError", f"internal error: {type(exc).__name__}")


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
    async def _http(_: Request, exc: StarletteHTTPException):
        names = {404: "NotFound", 405: "MethodNotAllowed", 401: "Unauthorized", 403: "Forbidden"}
        return error_body(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        return error_response(exc)
