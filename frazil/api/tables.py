"""BaaS tables and records over HTTP. Every route resolves the caller (`auth.principal`) and
calls `DataService`, where the ACL is decided; nothing here decides access."""
from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request

from frazil.api import paging
from frazil.api.auth import principal
from frazil.api.bodies import read_limited
from frazil.api.deps import AUTH_OPTIONAL, platform, platform_of
from frazil.api.models import (RecordDeleted, RecordOut, RecordPage, TableDropped, TableList, TableOut, TablePut,
                               answers, returns)
from frazil.data.acl import AclMode, Principal
from frazil.data.records import FIELD_NAME, PLATFORM_FIELDS, TABLE_NAME
from frazil.data.service import DEFAULT_LIMIT, MAX_LIMIT
from frazil.errors import BadRequest

router = APIRouter(prefix="/v1/tables", tags=["tables"])

# A record's JSON may be up to Settings.max_record_bytes; the body gets a little slack for
# whitespace, so that the limit is enforced on the record itself (413 either way).
BODY_SLACK = 64 * 1024



def _object_body(min_fields: int) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": True, "minProperties": min_fields,
        "propertyNames": {"pattern": FIELD_NAME.pattern, "not": {"enum": list(PLATFORM_FIELDS)}},
        "example": {"text": "hello", "tags": ["a"]}}}}}}


_OBJECT_BODY, _PATCH_BODY = _object_body(0), _object_body(1)
_ACL_MODES = [mode.value for mode in AclMode]
_ACL_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False, "description": "a missing (or null) mode is admin",
    "properties": {"acl": {"type": ["object", "null"], "properties": {
        "read": {"enum": _ACL_MODES}, "write": {"enum": _ACL_MODES}}}},
    "example": {"acl": {"read": "public", "write": "owner"}}}}}}}


# Documented, and checked by the data service (a 400 naming the rule, not a 422).
TABLE = Path(description="the table's name", json_schema_extra={"pattern": TABLE_NAME.pattern})
# The token is optional on record routes: the table's ACL decides (401 without one it needs).
RECORD_ANSWERS = (400, 401, 403, 404)


async def _json_body(request: Request, *, required: bool = True):
    limit = platform_of(request).settings.max_record_bytes + BODY_SLACK
    raw = await read_limited(request, limit, "the request body")
    if not raw.strip():
        if required:
            raise BadRequest("the request body is empty: send a JSON object")
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if body is None:  # not the same as no body: a JSON value that is not an object
        raise BadRequest("the request body is null: send a JSON object")
    return body


def _where(where: str | None):
    if where is None or where.strip() == "":
        return None
    try:
        return orjson.loads(where)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f'where is not valid JSON ({exc}); example: where={{"age":{{"gte":18}}}}') from None


# --- tables (admin) -------------------------------------------------------------------------

@router.get("", summary="List tables, by name (admin)", **returns(TableList),
            responses=answers(400, 401, 403, 422))
async def list_tables(limit: int | None = Query(None, ge=1, le=MAX_LIMIT, description="default: all"),
                      cursor: str | None = Query(None, description="the `next_cursor` of the previous page"),
                      who: Principal = Depends(principal), plat=Depends(platform)):
    after = paging.decode(cursor, "tables", str)
    found = await plat.data.list_tables(who, after=after, limit=None if limit is None else limit + 1)
    page, more = paging.split(found, limit)
    return {"success": True, "tables": [t.view() for t in page],
            "next_cursor": paging.encode("tables", page[-1].name) if more else None}


@router.put("/{table}", summary="Create a table or set its ACL (admin)", openapi_extra=_ACL_BODY,
            **returns(TablePut), responses=answers(400, 401, 403, 413))
async def put_table(request: Request, table: str = TABLE, who: Principal = Depends(principal), plat=Depends(platform)):
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


@router.get("/{table}", summary="A table's ACL and record count (admin)", **returns(TableOut),
            responses=answers(400, 401, 403, 404))
async def get_table(table: str = TABLE, who: Principal = Depends(principal), plat=Depends(platform)):
    return {"success": True, "table": (await plat.data.get_table(table, who)).view()}


@router.delete("/{table}", summary="Drop a table and all its records (admin)", **returns(TableDropped),
               responses=answers(400, 401, 403, 404))
async def drop_table(table: str = TABLE, who: Principal = Depends(principal), plat=Depends(platform)):
    deleted = await plat.data.drop_table(table, who)
    return {"success": True, "message": f"table {table!r} dropped", "deleted_records": deleted}


# --- records (under the table's ACL) ------------------------------------------------------------

@router.post("/{table}/records", summary="Insert a record", openapi_extra={**_OBJECT_BODY, **AUTH_OPTIONAL},
             **returns(RecordOut), responses=answers(*RECORD_ANSWERS, 413))
async def insert_record(request: Request, table: str = TABLE, who: Principal = Depends(principal),
                        plat=Depends(platform)):
    """Store a JSON object; the platform adds id, created_by (the caller's user id, null for
    the admin key and anonymous callers), created_at and updated_at, which the body may not set."""
    record = await _json_body(request)
    return {"success": True, "record": await plat.data.insert(table, record, who)}


@router.get("/{table}/records", summary="Find records", openapi_extra=AUTH_OPTIONAL, **returns(RecordPage),
            responses=answers(*RECORD_ANSWERS, 422))
async def find_records(
    table: str = TABLE,
    where: str | None = Query(None, description='A JSON filter, e.g. {"age": {"gte": 18}, "city": "Oslo"}; '
                                                 "operators eq, ne, lt, lte, gt, gte, in, contains"),
    order: str | None = Query(None, description='Sort keys, e.g. "-created_at" or "name,-age"'),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0),
    cursor: str | None = Query(None, description="the `next_cursor` of the previous page (instead of offset)"),
    who: Principal = Depends(principal),
    plat=Depends(platform),
):
    """Records matching `where`, under the table's read ACL (owner mode: only the caller's).

    `where` is a JSON object of `field: value` (equality) or `field: {op: value}` with op one of
    eq, ne, lt, lte, gt, gte, in, contains; "a.b" reaches nested fields; id, created_by,
    created_at and updated_at are the platform's fields (times as ISO 8601 or epoch seconds).
    Comparisons are typed: "10" never equals 10; `ne` and `eq null` also match missing fields.
    `contains` matches an array element, or a substring of a string. `count` is the number of
    records in this page; `next_cursor` continues after it while more match."""
    after_id, offset = _records_position(cursor, table, order, offset)
    records, more = await plat.data.find_page(table, _where(where), who, order=order, limit=limit, offset=offset,
                                              after_id=after_id)
    next_cursor = None
    if more:
        # Creation order pages by id (a key range, stable while records come and go); any
        # other order by position in the sorted result.
        at = {"after": records[-1]["id"]} if not order else {"offset": offset + len(records)}
        next_cursor = paging.encode("records", {"table": table, "order": order or "", **at})
    return {"success": True, "records": records, "count": len(records), "limit": limit, "offset": offset,
            "next_cursor": next_cursor}


def _records_position(cursor: str | None, table: str, order: str | None, offset: int) -> tuple[str | None, int]:
    """(the id to start after, the offset) for a records page; a cursor is only good for the
    same table and order it came from, and replaces `offset`."""
    position = paging.decode(cursor, "records", dict)
    if position is None:
        return None, offset
    if offset:
        raise BadRequest("give cursor or offset, not both")
    if position.get("table") != table or position.get("order") != (order or ""):
        raise BadRequest("this cursor belongs to another table or order: keep `order` as on the first page")
    after, skip = position.get("after"), position.get("offset")
    if isinstance(after, str) and not order:
        return after, 0
    if isinstance(skip, int) and not isinstance(skip, bool) and skip >= 0 and order:
        return None, skip
    raise BadRequest("invalid cursor: pass the next_cursor of the previous page of this same list")


@router.get("/{table}/records/{record_id}", summary="Read one record", openapi_extra=AUTH_OPTIONAL,
            **returns(RecordOut), responses=answers(*RECORD_ANSWERS))
async def get_record(record_id: str, table: str = TABLE, who: Principal = Depends(principal), plat=Depends(platform)):
    return {"success": True, "record": await plat.data.get(table, record_id, who)}


@router.patch("/{table}/records/{record_id}", summary="Set fields of one record (shallow merge)",
              openapi_extra={**_PATCH_BODY, **AUTH_OPTIONAL}, **returns(RecordOut),
              responses=answers(*RECORD_ANSWERS, 413))
async def patch_record(record_id: str, request: Request, table: str = TABLE, who: Principal = Depends(principal),
                       plat=Depends(platform)):
    """Set the body's top-level fields (null is stored as null). In owner mode, another user's
    record is 404. A caller who may write but not read gets back only id and times."""
    patch = await _json_body(request)
    return {"success": True, "record": await plat.data.update_one(table, record_id, patch, who)}


@router.delete("/{table}/records/{record_id}", summary="Delete one record", openapi_extra=AUTH_OPTIONAL,
               **returns(RecordDeleted), responses=answers(*RECORD_ANSWERS))
async def delete_record(record_id: str, table: str = TABLE, who: Principal = Depends(principal),
                        plat=Depends(platform)):
    record = await plat.data.delete_one(table, record_id, who)
    return {"success": True, "deleted": 1, "record": record}
