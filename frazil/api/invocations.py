"""Invoking functions and reading invocation records."""
from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import Response

from frazil.api import paging
from frazil.api.clientaddr import scope_client
from frazil.api.deps import AUTH_OPTIONAL, BEARER, platform, require_admin
from frazil.api.functions import NAME
from frazil.api.models import ADMIN_ANSWERS, Accepted, Envelope, InvocationList, InvocationOut, answers, returns
from frazil.api.invoking import MODES, handle_invoke, read_event
from frazil.deploy.config import check_name
from frazil.errors import BadRequest, Conflict, NotFound
from frazil.scheduler.entry import MAX_DELAY_S, Call, Mode
from frazil.scheduler.invoker import envelope_json
from frazil.store.models import InvocationStatus, Trigger

STATUSES = [s.value for s in InvocationStatus]

router = APIRouter(prefix="/v1", tags=["invocations"])


# A sync call answers the envelope (200, also when the function failed); async, 202.
INVOKE_ANSWERS = {200: {"model": Envelope, "description": "The function ran (see `success`)"},
                  202: {"model": Accepted, "description": "Queued (mode=async), durably recorded"}}


# Served by frazil.api.fastpath in a running server; this route documents it and answers the
# same way when reached directly.
@router.post("/functions/{name}/invoke", summary="Invoke a function (body = event JSON)",
             description="The token is needed unless the function's `access` is `public`: the admin key, or "
                         "an end user's token for `user` functions.",
             responses={**INVOKE_ANSWERS, **answers(400, 401, 403, 404, 413, 429)},
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": {}}}}, **AUTH_OPTIONAL})
async def invoke(request: Request, name: str = NAME,
                 # Not validated here: `handle_invoke` refuses a bad mode with 400 on both paths
                 # (a FastAPI pattern would answer 422 here and 400 on the fast path).
                 mode: str = Query("sync", description="`sync` (default) or `async`",
                                   json_schema_extra={"enum": list(MODES)}),
                 delay_s: str | None = Query(None, description="async only: run no earlier than this many seconds "
                                                               f"from now (0 < delay_s <= {MAX_DELAY_S})",
                                             json_schema_extra={"minLength": 1}),
                 plat=Depends(platform), _=Security(BEARER)):
    body = await read_event(request, plat.settings, mode)
    status, payload = await handle_invoke(plat, name, mode, request.headers.get("authorization"), body, delay_s,
                                          scope_client(request.scope, plat.settings.trusted_proxies))
    return Response(payload, status_code=status, media_type="application/json")


@router.get("/invocations", dependencies=[Depends(require_admin)],
            summary="Invocation records of every function, newest first (dead letters: ?status=failed)",
            **returns(InvocationList), responses=answers(*ADMIN_ANSWERS, 400, 422))
async def list_invocations(
        function: str | None = Query(None, description="only this function's"),
        status: str | None = Query(None, description="only records in this status",
                                   json_schema_extra={"enum": STATUSES}),
        mode: str | None = Query(None, description="`sync` or `async`", json_schema_extra={"enum": list(MODES)}),
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = Query(None, description="the `next_cursor` of the previous page"),
        plat=Depends(platform)):
    # An empty filter (`function=`, as a form leaves it) filters nothing.
    function, status, mode = function or None, status or None, mode or None
    # Checked here, not by FastAPI patterns, so that each refusal is a 400 naming its parameter.
    if function is not None:
        check_name(function)
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    if mode is not None and mode not in MODES:
        raise BadRequest(f"mode must be 'sync' or 'async', not {mode!r}")
    # The cursor names the filters too: a page of one list cannot continue another.
    kind = f"invocations:{function or ''}:{status or ''}:{mode or ''}"
    before = paging.decode(cursor, kind, str)
    await plat.records.flush()
    found = await plat.invocations.list(function=function, status=InvocationStatus(status) if status else None,
                                        mode=mode, before=before, limit=limit + 1)
    page, more = paging.split(found, limit)
    return {"success": True, "invocations": [r.public_view(with_event=False) for r in page],
            "next_cursor": paging.encode(kind, page[-1].id) if more else None}


@router.post("/invocations/{invocation_id}/retry", dependencies=[Depends(require_admin)],
             summary="Replay a record's event as a new invocation on the function's active version",
             responses={**INVOKE_ANSWERS, **answers(*ADMIN_ANSWERS, 400, 404, 409, 429)})
async def retry_invocation(invocation_id: str,
                           mode: str = Query("async", description="`async` (default: 202 with the new id) or "
                                                                  "`sync` (the envelope)",
                                             json_schema_extra={"enum": list(MODES)}),
                           plat=Depends(platform)):
    if mode not in MODES:
        raise BadRequest(f"mode must be 'sync' or 'async', not {mode!r}")
    record = plat.invoker.lookup(invocation_id) or await plat.invocations.get(invocation_id)
    if record is None:
        raise NotFound(f"invocation {invocation_id!r} does not exist")
    if not record.status.final:
        # Replaying it now would run the same event twice over.
        raise Conflict(f"invocation {invocation_id} is still {record.status.value}: retry it once it has finished")
    if record.event is None:
        raise Conflict(f"the event of invocation {invocation_id} was not kept (larger than the payload limit)")
    version = await plat.invoker.active_version(record.function)
    # The replay runs as the original caller did: the same end user (or none) is context.user.
    user = orjson.loads(record.caller) if record.caller is not None else None
    started = await plat.entry.invoke(version, record.event.encode(),
                                      Call(Trigger.RETRY, Mode(mode), user=user, retry_of=record.id))
    if started.outcome is not None:
        return Response(envelope_json(started.record, started.outcome), media_type="application/json")
    return Response(orjson.dumps({"success": True, "message": "accepted", "invocation_id": started.record.id,
                                  "retry_of": record.id, "status": started.record.status.value}),
                    status_code=202, media_type="application/json")


@router.get("/invocations/{invocation_id}", dependencies=[Depends(require_admin)],
            summary="One invocation record, with its captured logs", **returns(InvocationOut),
            responses=answers(*ADMIN_ANSWERS, 404))
async def get_invocation(invocation_id: str, plat=Depends(platform)):
    record = plat.invoker.lookup(invocation_id) or await plat.invocations.get(invocation_id)
    if record is None:
        raise NotFound(f"invocation {invocation_id!r} does not exist")
    return {"success": True, "invocation": record.public_view()}
