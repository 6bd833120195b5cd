"""Deploying, listing, reading and deleting functions; their versions, invocations and logs."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError

from frazil.api.bodies import require_length
from frazil.api.deps import platform, require_admin
from frazil.deploy.config import DeployConfig, check_name
from frazil.errors import BadRequest, NotFound
from frazil.store.models import FunctionVersion, iso

router = APIRouter(prefix="/v1/functions", tags=["functions"], dependencies=[Depends(require_admin)])

MULTIPART_OVERHEAD = 64 * 1024


def function_view(version: FunctionVersion) -> dict:
    return {"name": version.function, "version": version.number, **version.settings_view(),
            "deployed_at": iso(version.finished_at or version.created_at)}


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
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"invalid config: {problems}") from None
    return data, config


@router.put("/{name}", summary="Deploy a new version (multipart: bundle + config)")
async def deploy(name: str, request: Request, plat=Depends(platform)):
    check_name(name)
    bundle, config = await _parse_deploy(request, plat.settings.max_bundle_bytes)
    version = await plat.deployer.deploy(name, bundle, config)
    build_log = await plat.functions.build_log(name, version.number)
    return {"success": True, "message": f"version {version.number} of {name} is active",
            "function": function_view(version), "version": version.number, "build_log": build_log}


@router.get("", summary="List functions")
async def list_functions(plat=Depends(platform)):
    return {"success": True, "functions": [function_view(v) for v in await plat.functions.list_active()]}


async def _active(plat, name: str) -> FunctionVersion:
    version = await plat.functions.active(name)
    if version is None:
        if await plat.functions.exists(name):
            raise NotFound(f"function {name!r} has no successfully built version yet")
        raise NotFound(f"function {name!r} does not exist")
    return version


@router.get("/{name}", summary="A function's settings and active version")
async def get_function(name: str, plat=Depends(platform)):
    return {"success": True, "function": function_view(await _active(plat, name))}


@router.delete("/{name}", summary="Delete a function and all its versions")
async def delete_function(name: str, plat=Depends(platform)):
    if not await plat.delete_function(name):
        raise NotFound(f"function {name!r} does not exist")
    return {"success": True, "message": f"function {name} deleted"}


@router.get("/{name}/versions", summary="Every deploy of a function, newest first")
async def list_versions(name: str, plat=Depends(platform)):
    versions = await plat.functions.versions_of(name)
    if not versions:
        raise NotFound(f"function {name!r} does not exist")
    return {"success": True, "versions": [version_view(v) for v in versions]}


@router.get("/{name}/versions/{number}", summary="One version, with its build log (live while building)")
async def get_version(name: str, number: int, plat=Depends(platform)):
    version = await plat.functions.version(name, number)
    if version is None:
        raise NotFound(f"function {name!r} has no version {number}")
    live = plat.deployer.builds.get((name, number))
    log_text = live.text() if live is not None else await plat.functions.build_log(name, number)
    return {"success": True, "version": version_view(version, log_text)}


@router.get("/{name}/invocations", summary="Recent invocations of a function, newest first")
async def list_invocations(name: str, limit: int = Query(50, ge=1, le=500), before: str | None = None,
                           plat=Depends(platform)):
    await _known(plat, name)
    await plat.records.flush()
    records = await plat.invocations.list_for_function(name, limit=limit, before=before)
    return {"success": True, "invocations": [r.public_view() for r in records]}


@router.get("/{name}/logs", summary="Captured output of a function's invocations, oldest first")
async def logs(name: str, after: str | None = Query(None, description="an invocation id: only later ones"),
               limit: int = Query(100, ge=1, le=1000), plat=Depends(platform)):
    await _known(plat, name)
    await plat.records.flush()
    if after is None:
        records = list(reversed(await plat.invocations.list_for_function(name, limit=limit)))
    else:
        records = await plat.invocations.list_for_function(name, limit=limit, after=after, ascending=True)
    records = [r for r in records if r.status.final]
    entries = [{"invocation_id": r.id, "created_at": iso(r.created_at), "status": r.status.value,
                "version": r.version, "logs": r.logs or ""} for r in records]
    return {"success": True, "entries": entries, "cursor": records[-1].id if records else after}


async def _known(plat, name: str) -> None:
    check_name(name)
    if not await plat.functions.exists(name):
        raise NotFound(f"function {name!r} does not exist")
