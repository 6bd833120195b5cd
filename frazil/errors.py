"""The platform's own refusals. Each carries its HTTP status and a machine-readable type;
`frazil.api.errors` turns them into JSON responses in exactly one place."""
from __future__ import annotations


class FrazilError(Exception):
    status = 500
    type = "InternalError"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(FrazilError):
    status = 400
    type = "BadRequest"


class BadBundle(BadRequest):
    type = "BadBundle"


class BuildFailed(BadRequest):
    type = "BuildFailed"


class BuildTimedOut(BuildFailed):
    """A build step (an installer, the handler's inspection) ran past its time limit."""


class Unauthorized(FrazilError):
    status = 401
    type = "Unauthorized"


class Forbidden(FrazilError):
    status = 403
    type = "Forbidden"


class NotFound(FrazilError):
    status = 404
    type = "NotFound"


class Conflict(FrazilError):
    status = 409
    type = "Conflict"


class LengthRequired(FrazilError):
    status = 411
    type = "LengthRequired"


class PayloadTooLarge(FrazilError):
    status = 413
    type = "PayloadTooLarge"


class TooManyRequests(FrazilError):
    status = 429
    type = "TooManyRequests"


class BadGateway(FrazilError):
    """A function's answer cannot be turned into the HTTP response it asks for."""

    status = 502
    type = "BadGateway"


class ServiceUnavailable(FrazilError):
    status = 503
    type = "ServiceUnavailable"


def reason_of(exc: BaseException) -> str:
    """An exception in one line for a log or an answer: its type and its message's first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
