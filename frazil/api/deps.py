"""Request dependencies shared by the routers: the platform and who is calling."""
from __future__ import annotations

import hmac

from fastapi import Request

from frazil.errors import Unauthorized


def platform(request: Request):
    """The running `frazil.platform.Platform`."""
    return request.app.state.platform


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def is_admin_token(request: Request, token: str | None) -> bool:
    key = request.app.state.platform.admin_key
    return token is not None and hmac.compare_digest(token.encode(), key.encode())


def require_admin(request: Request) -> None:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("this route needs the admin key: send 'Authorization: Bearer <key>'")
    if not is_admin_token(request, token):
        raise Unauthorized("the admin key is not valid")
