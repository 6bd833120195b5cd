"""Deploying, listing, reading and deleting functions; their versions, invocations and logs."""
from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import ValidationError

from frazil.api import endpoints, paging
from frazil.api.bodies import read_limited, require_length
from frazil.api.deps import platform, require_admin
from frazil.api.models import (ADMIN_ANSWERS, Activated, Deployed, Done, FunctionList, FunctionOut, InvocationList,
                               LogPage, VersionList, VersionOut, answers, returns)
from frazil.api.openapi import REF_TEMPLATE
from frazil.deploy.config import ENV_KEY_RE, MAX_RESIDENT, MAX_TIMEOUT_S, NAME_RE, DeployConfig, check_name, problems
from frazil.errors import BadRequest, NotFound
from frazil.scheduler import schedules
from frazil.store.models import FunctionVersion, iso

router = APIRouter(prefix="/v1/functions", tags=["functions"], dependencies=[Depends(require_admin)])

# Page parameters. Functions and versions are listed whole unless `limit` is given, as before
# paging existed; invocations and logs keep their default page sizes.
MAX_PAGE = 1000
CURSOR = Query(None, description="the `next_cursor` of the previous page")
# Documented, and checked by `check_name` (a 400 naming the rule, not a 422).
NAME = Path(description="the function's name", json_schema_extra={"pattern": NAME_RE.pattern})
# The deploy body: its `config` part is DeployConfig's schema (frazil.api.openapi adds it).
DEPLOY_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["bundle"], "properties": {
        "bundle": {"type": "string", "format": "binary",
                   "description": "the code: a zip or tar.gz of the function's folder"},
        "config": {"$ref": "#/components/schemas/DeployConfig"}}},
    "encoding": {"config": {"contentType": "application/json"}}}}}}

# PATCH's `triggers`: the deploy's own list schema (its items are the trigger components
# frazil.api.openapi adds), or null.
PATCH_TRIGGERS = {**DeployConfig.model_json_schema(ref_template=REF_TEMPLATE)["properties"]["triggers"],
                  "type": ["array", "null"], "description": "replaces the whole list; [] removes every trigger"}

MULTIPART_OVERHEAD = 64 * 1024
MAX_VERSION = 2**31 - 1


def function_view(version: FunctionVersion) -> dict:
    """The active version; its schedule triggers show when they fire next, and `endpoint` is
    the path of its HTTP endpoint (None without `http`)."""
    view = {"name": version.function, "version": version.number, **version.settings_view(),
            "endpoint": f"{endpoints.PREFIX}/{version.function}" if version.http else None,
            "deployed_at": iso(version.finished_at or version.created_at)}
    now = time.time()
    for trigger in view["triggers"]:
        if trigger.get("type") == schedules.SCHEDULE:
            trigger["next_fire_at"] = iso(schedules.next_fire(trigger["cron"], now))
    return view


def version_view(version: FunctionVersion, build_log: str | None = None) -> dict:
    view = {"function": version.function, "version": version.number, "status": version.status.value,
            **version.settings_view(), "bundle_sha256": version.bundle_hash, "bundle_bytes": version.bundle_bytes,
            "layer": version.layer_key, "error": version.error, "created_at": iso(version.created_at),
            "finished_at": iso(version.finished_at)}
    if build_log is not None:
        view["build_log"] = build_log
    return view


async def _parse_deploy(request: Request, limit: int) -> tuple[bytes, DeployConfig]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("a deploy is multipart/form-data with a file part 'bundle' and a JSON part 'config'")
    require_length(request, limit + MULTIPART_OVERHEAD, "the upload")
    try:
        form = await request.form(max_files=1, max_fields=4)
    except Exception as exc:  # the multipart parser's own errors
        raise BadRequest(f"the upload is not valid multipart/form-data: {exc}") from None
    bundle = form.get("bundle")
    if bundle is None or isinstance(bundle, str):
        raise BadRequest("the upload has no file part named 'bundle'")
    data = await bundle.read()
    raw_config = form.get("config") or "{}"
    if not isinstance(raw_config, str):
        raw_config = (await raw_config.read()).decode("utf-8", "replace")
    try:
        config = DeployConfig.model_validate_json(raw_config)
    except ValidationError as exc:
        raise BadRequest(f"invalid config: {problems(exc)}") from None
    return data, config


@router.put("/{name}", summary="Deploy a new version (multipart: bundle + config)", **returns(Deployed),
            responses=answers(*ADMIN_ANSWERS, 400, 411, 413), openapi_extra=DEPLOY_BODY,
            description="Answers once the new version is built and active; a bad bundle or a failed build "
                        "is a 400 with the reason, and the active version stays as it was.")
async def deploy(request: Request, name: str = NAME, plat=Depends(platform)):
    check_name(name)
    bundle, config = await _parse_deploy(request, plat.settings.max_bundle_bytes)
    version = await plat.deployer.deploy(name, bundle, config)
    build_log = await plat.functions.build_log(name, version.number)
    return {"success": True, "message": f"version {version.number} of {name} is active",
            "function": function_view(version), "version": version.number, "build_log": build_log}


@router.get("", summary="List functions, by name", **returns(FunctionList),
            responses=answers(*ADMIN_ANSWERS, 400, 422))
async def list_functions(limit: int | None = Query(None, ge=1, le=MAX_PAGE, description="default: all"),
                         cursor: str | None = CURSOR, plat=Depends(platform)):
    after = paging.decode(cursor, "functions", str)
    found = await plat.functions.list_active(after=after, limit=None if limit is None else limit + 1)
    page, more = paging.split(found, limit)
    return {"success": True, "functions": [function_view(v) for v in page],
            "next_cursor": paging.encode("functions", page[-1].function) if more else None}


@router.get("/{name}", summary="A function's settings and active version", **returns(FunctionOut),
            responses=answers(*ADMIN_ANSWERS, 404))
async def get_function(name: str = NAME, plat=Depends(platform)):
    return {"success": True, "function": function_view(await plat.versions.active(name))}


@router.delete("/{name}", summary="Delete a function and all its versions", **returns(Done),
               responses=answers(*ADMIN_ANSWERS, 404))
async def delete_function(name: str = NAME, plat=Depends(platform)):
    if not await plat.delete_function(name):
        raise NotFound(f"function {name!r} does not exist")
    return {"success": True, "message": f"function {name} deleted"}


MAX_SETTINGS_BYTES = 64 * 1024


async def _json_object(request: Request, what: str) -> dict:
    raw = (await read_limited(request, MAX_SETTINGS_BYTES, what)).strip()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return body


@router.post("/{name}/rollback", summary="Make an older ready version active again",
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
                 "type": "object", "properties": {"version": {"type": "integer", "minimum": 1,
                                                              "description": "default: the previous ready version"}},
                 "additionalProperties": False}}}}},
             **returns(Activated), responses=answers(*ADMIN_ANSWERS, 400, 404, 409, 413))
async def rollback(request: Request, name: str = NAME, plat=Depends(platform)):
    check_name(name)
    body = await _json_object(request, "the body")
    unknown = set(body) - {"version"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}: the body is {{\"version\": N}}")
    number = body.get("version")
    # bool is an int in Python; `true` is not a version number.
    if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
        raise BadRequest(f"version must be a version number (an integer from 1), not {number!r}")
    version = await plat.versions.rollback(name, number)
    return {"success": True, "message": f"version {version.number} of {name} is active",
            "function": function_view(version), "version": version.number}


@router.patch("/{name}", summary="Change settings only: a new version from the active version's code",
              openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
                  # null, like an absent key, leaves a setting as it is
                  "type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
                      "memory": {"enum": [128, 256, None]},
                      "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
                      "env": {"type": ["object", "null"], "additionalProperties": {"type": "string"},
                              "propertyNames": {"pattern": ENV_KEY_RE.pattern},
                              "description": "replaces the whole environment"},
                      "resident": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_RESIDENT},
                      "access": {"enum": ["admin", "user", "public", None]},
                      "http": {"type": ["boolean", "null"]},
                      "triggers": PATCH_TRIGGERS}}}}}},
              **returns(Activated), responses=answers(*ADMIN_ANSWERS, 400, 404, 413))
async def patch_function(request: Request, name: str = NAME, plat=Depends(platform)):
    check_name(name)
    version = await plat.versions.patch(name, await _json_object(request, "the settings"))
    return {"success": True, "message": f"version {version.number} of {name} is active",
            "function": function_view(version), "version": version.number}


@router.get("/{name}/versions", summary="Every deploy of a function, newest first", **returns(VersionList),
            responses=answers(*ADMIN_ANSWERS, 400, 404, 422))
async def list_versions(name: str = NAME,
                        limit: int | None = Query(None, ge=1, le=MAX_PAGE, description="default: all"),
                        cursor: str | None = CURSOR, plat=Depends(platform)):
    before = paging.decode(cursor, "versions", int)
    found = await plat.functions.versions_of(name, before=before, limit=None if limit is None else limit + 1)
    if not found and not await plat.functions.exists(name):
        raise NotFound(f"function {name!r} does not exist")
    page, more = paging.split(found, limit)
    return {"success": True, "versions": [version_view(v) for v in page],
            "next_cursor": paging.encode("versions", page[-1].number) if more else None}


@router.get("/{name}/versions/{number}", summary="One version, with its build log (live while building)",
            **returns(VersionOut), responses=answers(*ADMIN_ANSWERS, 404, 422))
async def get_version(number: int, name: str = NAME, plat=Depends(platform)):
    # Version numbers are 32-bit integers in the store: a larger one names no version (and
    # would overflow the query).
    version = await plat.functions.version(name, number) if 1 <= number <= MAX_VERSION else None
    if version is None:
        raise NotFound(f"function {name!r} has no version {number}")
    live = plat.deployer.builds.get((name, number))
    log_text = live.text() if live is not None else await plat.functions.build_log(name, number)
    return {"success": True, "version": version_view(version, log_text)}


@router.get("/{name}/invocations", summary="Recent invocations of a function, newest first",
            **returns(InvocationList), responses=answers(*ADMIN_ANSWERS, 400, 404, 422))
async def list_invocations(name: str = NAME, limit: int = Query(50, ge=1, le=500), cursor: str | None = CURSOR,
                           before: str | None = Query(None, description="an invocation id: only earlier ones"),
                           plat=Depends(platform)):
    await _known(plat, name)
    before = paging.decode(cursor, "invocations", str) or before
    await plat.records.flush()
    found = await plat.invocations.list_for_function(name, limit=limit + 1, before=before)
    page, more = paging.split(found, limit)
    return {"success": True, "invocations": [r.public_view(with_event=False) for r in page],
            "next_cursor": paging.encode("invocations", page[-1].id) if more else None}


@router.get("/{name}/logs", summary="Captured output of a function's invocations, oldest first",
            **returns(LogPage), responses=answers(*ADMIN_ANSWERS, 400, 404, 422))
async def logs(name: str = NAME, after: str | None = Query(None, description="an invocation id: only later ones"),
               limit: int = Query(100, ge=1, le=1000), cursor: str | None = CURSOR, plat=Depends(platform)):
    """Without `after`: the latest `limit` invocations' output; `next_cursor` then pages back to
    older output. With `after` (the `cursor` of a previous answer, for following): the output
    that came later, and `next_cursor` pages forward while more came. Only finished invocations
    are shown, so a page may hold fewer entries than `limit`."""
    await _known(plat, name)
    position = paging.decode(cursor, "logs", dict)
    if position is not None:
        if position.get("d") not in ("asc", "desc") or not isinstance(position.get("id"), str):
            raise BadRequest("invalid cursor: pass the next_cursor of the previous page of this same list")
        ascending, start = position["d"] == "asc", position["id"]
    else:
        ascending, start = after is not None, after
    await plat.records.flush()
    if ascending:
        found = await plat.invocations.list_for_function(name, limit=limit + 1, after=start, ascending=True)
    else:
        found = await plat.invocations.list_for_function(name, limit=limit + 1, before=start)
    page, more = paging.split(found, limit)
    # The next page starts after the last record read, finished or not: none is skipped.
    next_cursor = paging.encode("logs", {"d": "asc" if ascending else "desc", "id": page[-1].id}) if more else None
    records = [r for r in (page if ascending else reversed(page)) if r.status.final]
    entries = [{"invocation_id": r.id, "created_at": iso(r.created_at), "status": r.status.value,
                "version": r.version, "logs": r.logs or ""} for r in records]
    # `cursor` is where a follower asks from next (the newest finished entry shown); paging
    # back in time gives none.
    if ascending or position is None:
        follow = records[-1].id if records else start
    else:
        follow = None
    return {"success": True, "entries": entries, "cursor": follow, "next_cursor": next_cursor}


async def _known(plat, name: str) -> None:
    check_name(name)
    if not await plat.functions.exists(name):
        raise NotFound(f"function {name!r} does not exist")
