"""Invoking functions and reading invocation records."""
from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Depends, Query, Request

from frazil.api.bodies import read_limited
from frazil.api.deps import bearer_token, is_admin_token, platform, require_admin
from frazil.api.responses import JSONResponse
from frazil.errors import BadRequest, NotFound, Unauthorized
from frazil.scheduler.invoker import envelope
from frazil.store.ids import new_id
from frazil.store.models import InvocationRecord, InvocationStatus

router = APIRouter(prefix="/v1", tags=["invocations"])


@router.post("/functions/{name}/invoke", summary="Invoke a function (body = event JSON)")
async def invoke(name: str, request: Request, mode: str = Query("sync", pattern="^(sync|async)$"),
                 plat=Depends(platform)):
    version = await plat.invoker.active_version(name)
    if not version.public and not is_admin_token(request, bearer_token(request)):
        raise Unauthorized(f"function {name!r} is not public: send the admin key")
    body = await read_limited(request, plat.settings.max_payload_bytes, "the event")
    event = body.strip() or b"{}"
    try:
        orjson.loads(event)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the event is not valid JSON: {exc}") from None
    if mode == "async":
        now = time.time()
        record = InvocationRecord(id=new_id(), function=name, version=version.number, mode="async",
                                  status=InvocationStatus.QUEUED, created_at=now, event=event.decode(),
                                  expires_at=now + plat.settings.async_retry_s)
        await plat.invocations.insert(record)  # durable before we answer 202
        plat.dispatcher.notify()
        return JSONResponse({"success": True, "message": "accepted", "invocation_id": record.id,
                               "status": record.status.value}, status_code=202)
    record, outcome = await plat.invoker.invoke_sync(version, event)
    return JSONResponse(envelope(record, outcome))


@router.get("/invocations/{invocation_id}", dependencies=[Depends(require_admin)],
            summary="One invocation record, with its captured logs")
async def get_invocation(invocation_id: str, plat=Depends(platform)):
    record = plat.invoker.lookup(invocation_id) or await plat.invocations.get(invocation_id)
    if record is None:
        raise NotFound(f"invocation {invocation_id!r} does not exist")
    return {"success": True, "invocation": record.public_view()}
