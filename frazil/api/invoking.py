"""Invoking a function over HTTP: the one handler behind both the documented FastAPI route
and the fast path (frazil.api.fastpath)."""
from __future__ import annotations

import hmac
import time

import orjson

from frazil.errors import BadRequest, Unauthorized
from frazil.scheduler.invoker import envelope_json
from frazil.store.ids import new_id
from frazil.store.models import InvocationRecord, InvocationStatus

MODES = ("sync", "async")


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


async def handle_invoke(platform, name: str, mode: str, authorization: str | None, body: bytes) -> tuple[int, bytes]:
    """Run (sync) or queue (async) one invocation; returns (HTTP status, JSON body).
    Raises FrazilError for the platform's refusals."""
    if mode not in MODES:
        raise BadRequest(f"mode must be 'sync' or 'async', not {mode!r}")
    version = await platform.invoker.active_version(name)
    if not version.public and not is_admin(platform, parse_bearer(authorization)):
        raise Unauthorized(f"function {name!r} is not public: send the admin key")
    event = body.strip() or b"{}"
    try:
        orjson.loads(event)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the event is not valid JSON: {exc}") from None
    if mode == "async":
        now = time.time()
        record = InvocationRecord(id=new_id(), function=name, version=version.number, mode="async",
                                  status=InvocationStatus.QUEUED, created_at=now, event=event.decode(),
                                  expires_at=now + platform.settings.async_retry_s)
        await platform.invocations.insert(record)  # durable before we answer 202
        platform.dispatcher.notify()
        return 202, orjson.dumps({"success": True, "message": "accepted", "invocation_id": record.id,
                                  "status": record.status.value})
    record, outcome = await platform.invoker.invoke_sync(version, event)
    return 200, envelope_json(record, outcome)
