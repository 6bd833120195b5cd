"""BaaS tables and records over HTTP. Every route resolves the caller (`auth.principal`) and
calls `DataService`, where the ACL is decided; nothing here decides access."""
from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Query, Request

from frazil.api.auth import principal
from frazil.api.bodies import read_limited
from frazil.api.deps import platform, platform_of
from frazil.data.acl import Principal
from frazil.data.service import DEFAULT_LIMIT, MAX_LIMIT
from frazil.errors import BadRequest

router = APIRouter(prefix="/v1/tables", tags=["tables"])

# A record's JSON may be up to Settings.max_record_bytes; the body gets a little slack for
# whitespace, so that the limit is enforced on the record itself (413 either way).
BODY_SLACK = 64 * 1024

_OBJECT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": True, "example": {"text": "hello", "tags": ["a"]}}}}}}
_ACL_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"acl": {"type": "object", "properties": {
        "read": {"enum": ["public", "authenticated", "owner", "admin"]},
        "write": {"enum": ["public", "authenticated", "owner", "admin"]}}}},
    "example": {"acl": {"read": "public", "write": "owner"}}}}}}}


async def _json_body(request: Request, *, required: bool = True):
    limit = platform_of(request).settings.max_record_bytes + BODY_SLACK
    raw = await read_limited(request, limit, "the request body")
    if not raw.strip():
        if required:
            raise BadRequest("the request body is empty: send a JSON object")
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def _where(where: str | None):
    if where is None or where.strip() == "":
        return None
    try:
        return orjson.loads(where)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f'where is not valid JSON ({exc}); example: where={{"age":{{"gte":18}}}}') from None


# --- tables (admin) -------------------------------------------------------------------------

@router.get("", summary="List tables (admin)")
async def list_tables(who: Principal = Depends(principal), plat=Depends(platform)):
    tables = await plat.data.list_tables(who)
    return {"success": True, "tables": [t.view() for t in tables]}


@router.put("/{table}", summary="Create a table or set its ACL (admin)", openapi_extra=_ACL_BODY)
async def put_table(table: str, request: Request, who: Principal = Depends(principal), plat=Depends(platform)):
    """Modes: public (anyone), authenticated (any logged-in user), owner (logged-in users, and
    only the records they created), admin (the admin key and functions). A missing mode is admin."""
    body = await _json_body(request, required=False)
    if body is not None and not isinstance(body, dict):
        raise BadRequest('the body must be {"acl": {"read": "...", "write": "..."}}')
    unknown = set(body or {}) - {"acl"}
    if unknown:
        raise BadRequest(f"unknown keys in the body: {', '.join(sorted(unknown))} (only acl)")
    info, created = await plat.data.put_table(table, (body or {}).get("acl"), who)
    return {"success": True, "created": created, "table": info.view()}


@router.get("/{table}", summary="A table's ACL and record count (admin)")
async def get_table(table: str, who: Principal = Depends(principal), plat=Depends(platform)):
    return {"success": True, "table": (await plat.data.get_table(table, who)).view()}


@router.delete("/{table}", summary="Drop a table and all its records (admin)")
async def drop_table(table: str, who: Principal = Depends(principal), plat=Depends(platform)):
    deleted = await plat.data.drop_table(table, who)
    return {"success": True, "message": f"table {table!r} dropped", "deleted_records": deleted}


# --- records (under the table's ACL) ------------------------------------------------------------

@router.post("/{table}/records", summary="Insert a record", openapi_extra=_OBJECT_BODY)
async def insert_record(table: str, request: Request, who: Principal = Depends(principal), plat=Depends(platform)):
    """Store a JSON object; the platform adds id, created_by (the caller's user id, null for
    the admin key and anonymous callers), created_at and updated_at, which the body may not set."""
    record = await _json_body(request)
    return {"success": True, "record": await plat.data.insert(table, record, who)}


@router.get("/{table}/records", summary="Find records")
async def find_records(
    table: str,
    where: str | None = Query(None, description='A JSON filter, e.g. {"age": {"gte": 18}, "city": "Oslo"}; '
                                                 "operators eq, ne, lt, lte, gt, gte, in, contains"),
    order: str | None = Query(None, description='Sort keys, e.g. "-created_at" or "name,-age"'),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0),
    who: Principal = Depends(principal),
    plat=Depends(platform),
):
    """Records matching `where`, under the table's read ACL (owner mode: only the caller's).

    `where` is a JSON object of `field: value` (equality) or `field: {op: value}` with op one of
    eq, ne, lt, lte, gt, gte, in, contains; "a.b" reaches nested fields; id, created_by,
    created_at and updated_at are the platform's fields (times as ISO 8601 or epoch seconds).
    Comparisons are typed: "10" never equals 10; `ne` and `eq null` also match missing fields.
    `contains` matches an array element, or a substring of a string. `count` is the number of
    records in this page."""
    records = await plat.data.find(table, _where(where), who, order=order, limit=limit, offset=offset)
    return {"success": True, "records": records, "count": len(records), "limit": limit, "offset": offset}


@router.get("/{table}/records/{record_id}", summary="Read one record")
async def get_record(table: str, record_id: str, who: Principal = Depends(principal), plat=Depends(platform)):
    return {"success": True, "record": await plat.data.get(table, record_id, who)}


@router.patch("/{table}/records/{record_id}", summary="Set fields of one record (shallow merge)",
              openapi_extra=_OBJECT_BODY)
async def patch_record(table: str, record_id: str, request: Request, who: Principal = Depends(principal),
                       plat=Depends(platform)):
    """Set the body's top-level fields (null is stored as null). In owner mode, another user's
    record is 404. A caller who may write but not read gets back only id and times."""
    patch = await _json_body(request)
    return {"success": True, "record": await plat.data.update_one(table, record_id, patch, who)}


@router.delete("/{table}/records/{record_id}", summary="Delete one record")
async def delete_record(table: str, record_id: str, who: Principal = Depends(principal), plat=Depends(platform)):
    record = await plat.data.delete_one(table, record_id, who)
    return {"success": True, "deleted": 1, "record": record}
