"""Invoking a function over HTTP: the one handler behind both the documented FastAPI route
and the fast path (frazil.api.fastpath)."""
from __future__ import annotations

import hmac
import math

import orjson

from frazil.api.bodies import read_limited
from frazil.errors import BadRequest, Forbidden, Unauthorized
from frazil.jsonbounds import JsonBounds, check_json
from frazil.scheduler.entry import MAX_DELAY_S, Call, Mode
from frazil.scheduler.invoker import envelope_json
from frazil.store.models import Access, FunctionVersion, Trigger, iso

MODES = tuple(m.value for m in Mode)


def parse_bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (None when absent)."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def is_admin(platform, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(token.encode(), platform.admin_key.encode())


async def admit(platform, version: FunctionVersion, authorization: str | None) -> dict | None:
    """Apply `version`'s access rule to the caller (SPEC "Who may invoke"); answer the end user
    who called, as `context.user` shows them, or None (the admin, or nobody on a public function).

    No token: only a public function. The admin key: any function. Anything else must be a live
    end-user token - 401 otherwise, even on a public function, so that a client with a stale
    token learns it at once (as the data routes do) - and then may call `user` and `public`
    functions; on an `admin` function a valid end user is 403."""
    token = parse_bearer(authorization)
    if token is None:
        if version.access is Access.PUBLIC:
            return None
        if version.access is Access.USER:
            raise Unauthorized(f"function {version.function!r} needs an end user's token or the admin key")
        raise Unauthorized(f"function {version.function!r} is not public: send the admin key")
    if is_admin(platform, token):
        return None
    principal = await platform.data.accounts.authenticate(token)  # Unauthorized for a bad token
    if version.access is Access.ADMIN:
        raise Forbidden(f"function {version.function!r} may be invoked by the admin only (access = admin)")
    user = await platform.data.accounts.user(principal.user_id)
    if user is None:
        raise Unauthorized("the token's user no longer exists")
    return {"id": user["user_id"], "username": user["username"]}


def parse_delay(delay_s: str | None, mode: str) -> float | None:
    """The `delay_s` query parameter: seconds, 0 < N <= MAX_DELAY_S, async invocations only."""
    if delay_s is None:
        return None
    try:
        delay = float(delay_s)
    except ValueError:
        raise BadRequest(f"delay_s must be a number of seconds, not {delay_s!r}") from None
    if not (math.isfinite(delay) and 0 < delay <= MAX_DELAY_S):
        raise BadRequest(f"delay_s must be more than 0 and at most {MAX_DELAY_S} seconds, not {delay_s}")
    if mode != "async":
        raise BadRequest("delay_s is for async invocations: add mode=async")
    return delay


async def read_event(request, settings, mode: str) -> bytes:
    """The request's body, refused with 413 over the limit of `mode`: async events are recorded
    and queued, so they are kept small (256 KB by default, as Lambda); sync events may be as
    large as a result (6 MB)."""
    if mode == "async":
        return await read_limited(request, settings.max_async_event_bytes, "the event of an async invocation")
    return await read_limited(request, settings.max_payload_bytes, "the event")


async def handle_invoke(platform, name: str, mode: str, authorization: str | None, body: bytes,
                        delay_s: str | None = None, client: str | None = None) -> tuple[int, bytes]:
    """Run (sync) or queue (async, perhaps delayed) one invocation; returns (HTTP status, JSON
    body). `client` is the caller's address: async calls without the admin key are limited per
    address. Raises FrazilError for the platform's refusals."""
    if mode not in MODES:
        raise BadRequest(f"mode must be 'sync' or 'async', not {mode!r}")
    delay = parse_delay(delay_s, mode)
    version = await platform.invoker.active_version(name)
    user = await admit(platform, version, authorization)
    if mode == "async" and not is_admin(platform, parse_bearer(authorization)):
        platform.public_async.take(client or "unknown", "async invocations")
    event = body.strip() or b"{}"
    try:
        decoded = orjson.loads(event)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the event is not valid JSON: {exc}") from None
    # Refused here, before dispatch: a runtime must never be handed JSON too deep to parse.
    bounds = JsonBounds.from_settings(platform.settings)
    if bounds.may_exceed(event):
        check_json(decoded, "the event", bounds)
    trigger = Trigger.DELAY if delay else Trigger.API
    started = await platform.entry.invoke(version, event, Call(trigger, Mode(mode), delay_s=delay, user=user))
    if started.outcome is None:
        accepted = {"success": True, "message": "accepted", "invocation_id": started.record.id,
                    "status": started.record.status.value}
        if delay:
            accepted["not_before"] = iso(started.record.next_attempt_at)
        return 202, orjson.dumps(accepted)
    return 200, envelope_json(started.record, started.outcome)
