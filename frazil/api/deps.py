"""Request dependencies shared by the routers: the platform and who is calling.

FastAPI runs a plain `def` dependency in a thread pool; these are `async def` so that no
request pays for that hand-off."""
from __future__ import annotations

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from frazil.api.invoking import is_admin, parse_bearer
from frazil.errors import Forbidden, Unauthorized


# The bearer scheme of the OpenAPI document (what Swagger UI's Authorize button fills in). A route
# that depends on it is documented as taking it; the checks are ours (`require_admin`,
# `frazil.api.auth.principal`), never this object's.
BEARER = HTTPBearer(scheme_name="bearer", auto_error=False,
                    description="The admin key (every route), or an end user's token from /v1/auth/login "
                                "(data tables, `user` functions)")
# openapi_extra of a route where the token is optional (public functions, public tables).
AUTH_OPTIONAL = {"security": [{}]}


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


async def require_admin(request: Request,
                        _: HTTPAuthorizationCredentials | None = Security(BEARER)) -> None:
    """Admin routes: no token or an invalid one is 401 (authenticate); a valid end user's token
    is 403 (authenticated, but not allowed), as the data routes answer."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("this route needs the admin key: send 'Authorization: Bearer <key>'")
    if is_admin_token(request, token):
        return
    try:
        await platform_of(request).data.accounts.authenticate(token)
    except Unauthorized:
        raise Unauthorized("the admin key is not valid") from None
    raise Forbidden("this route needs the admin key; an end user's token does not give access to it")
