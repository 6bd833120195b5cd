"""Invoking functions and reading invocation records."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from frazil.api.bodies import read_limited
from frazil.api.deps import platform, require_admin
from frazil.api.invoking import handle_invoke
from frazil.errors import NotFound

router = APIRouter(prefix="/v1", tags=["invocations"])


@router.post("/functions/{name}/invoke", summary="Invoke a function (body = event JSON)",
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": {}}}}})
async def invoke(name: str, request: Request, mode: str = Query("sync", pattern="^(sync|async)$"),
                 plat=Depends(platform)):
    """Served by frazil.api.fastpath in a running server; this route documents it and
    answers the same way when reached directly."""
    body = await read_limited(request, plat.settings.max_payload_bytes, "the event")
    status, payload = await handle_invoke(plat, name, mode, request.headers.get("authorization"), body)
    return Response(payload, status_code=status, media_type="application/json")


@router.get("/invocations/{invocation_id}", dependencies=[Depends(require_admin)],
            summary="One invocation record, with its captured logs")
async def get_invocation(invocation_id: str, plat=Depends(platform)):
    record = plat.invoker.lookup(invocation_id) or await plat.invocations.get(invocation_id)
    if record is None:
        raise NotFound(f"invocation {invocation_id!r} does not exist")
    return {"success": True, "invocation": record.public_view()}
