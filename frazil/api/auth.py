"""End-user accounts (register, log in, log out, who am I) and the `principal` dependency:
who is calling a data route.

`principal`: no Authorization header → anonymous; the admin key → admin; anything else must be
a live user token, or the request is refused with 401 - even on a public table, so a client
with a stale token learns it at once instead of silently being treated as anonymous.
"""
from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request, Security

from frazil.api.bodies import read_limited
from frazil.api.clientaddr import scope_client
from frazil.api.deps import AUTH_OPTIONAL, BEARER, bearer_token, is_admin_token, platform, platform_of
from frazil.api.models import Done, Me, Session, answers, returns
from frazil.data.accounts import MAX_PASSWORD, MIN_PASSWORD, USERNAME
from frazil.data.acl import ADMIN, ANONYMOUS, Principal, PrincipalKind
from frazil.errors import BadRequest, Unauthorized

router = APIRouter(prefix="/v1/auth", tags=["auth"])

MAX_CREDENTIALS_BYTES = 8 * 1024

_CREDENTIALS_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["username", "password"],
            "properties": {"username": {"type": "string", "pattern": USERNAME.pattern, "example": "alice"},
                           "password": {"type": "string", "minLength": MIN_PASSWORD, "maxLength": MAX_PASSWORD,
                                        "example": "correct horse"}},
        }}},
    }
}


async def principal(request: Request, _=Security(BEARER)) -> Principal:
    token = bearer_token(request)
    if token is None:
        return ANONYMOUS
    if is_admin_token(request, token):
        return ADMIN
    return await platform_of(request).data.accounts.authenticate(token)


async def _credentials(request: Request) -> tuple[str, str]:
    raw = await read_limited(request, MAX_CREDENTIALS_BYTES, "the credentials")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or "username" not in body or "password" not in body:
        raise BadRequest('the body must be {"username": "...", "password": "..."}')
    return body["username"], body["password"]


def _client_address(request: Request) -> str | None:
    return scope_client(request.scope, platform_of(request).settings.trusted_proxies)


@router.post("/register", summary="Create an end user and log them in", openapi_extra=_CREDENTIALS_SCHEMA,
             **returns(Session), responses=answers(400, 409, 413, 429))
async def register(request: Request, plat=Depends(platform)):
    username, password = await _credentials(request)
    session = await plat.data.accounts.register(username, password, _client_address(request))
    return {"success": True, **session.view()}


@router.post("/login", summary="Log in: a token for Authorization: Bearer", openapi_extra=_CREDENTIALS_SCHEMA,
             **returns(Session), responses=answers(400, 401, 413, 429))
async def login(request: Request, plat=Depends(platform)):
    username, password = await _credentials(request)
    session = await plat.data.accounts.login(username, password, _client_address(request))
    return {"success": True, **session.view()}


@router.post("/logout", summary="Revoke the token this request carries", **returns(Done),
             responses=answers(401))
async def logout(request: Request, plat=Depends(platform), _=Security(BEARER)):
    token = bearer_token(request)
    if token is None or is_admin_token(request, token):
        raise Unauthorized("send the user token to revoke as 'Authorization: Bearer <token>'")
    if not await plat.data.accounts.logout(token):
        raise Unauthorized("the token is not valid (unknown, or logged out)")
    return {"success": True, "message": "logged out"}


@router.get("/me", summary="The user this token belongs to", **returns(Me), responses=answers(401))
async def me(who: Principal = Depends(principal), plat=Depends(platform)):
    if who.kind is PrincipalKind.ANONYMOUS:
        raise Unauthorized("send a user token as 'Authorization: Bearer <token>'")
    if who.is_admin:
        return {"success": True, "admin": True, "user_id": None}
    user = await plat.data.accounts.user(who.user_id)
    if user is None:
        raise Unauthorized("the token's user no longer exists")
    return {"success": True, "admin": False, **user}
