"""Request dependencies shared by the routers: the platform and who is calling.

FastAPI runs a plain `def` dependency in a thread pool; these are `async def` so that no
request pays for that hand-off."""
from __future__ import annotations

from fastapi import Request

from frazil.api.invoking import is_admin, parse_bearer
from frazil.errors import Unauthorized


def platform_of(request: Request):
    """The running `frazil.platform.Platform`."""
    return request.app.state.platform


async def platform(request: Request):
    """`platform_of` as a dependency."""
    return request.app.state.platform


def bearer_token(request: Request) -> str | None:
    return parse_bearer(request.headers.get("authorization"))


def is_admin_token(request: Request, token: str | None) -> bool:
    return is_admin(request.app.state.platform, token)


async def require_admin(request: Request) -> None:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("this route needs the admin key: send 'Authorization: Bearer <key>'")
    if not is_admin_token(request, token):
        raise Unauthorized("the admin key is not valid")
