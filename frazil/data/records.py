"""What a record is: its platform fields, the rules for table and field names, validation of a
user's record or patch, and the JSON view handed to callers.

A record is flat: `{"id", "created_by", "created_at", "updated_at", **user_fields}`. The four
platform fields are reserved: a record or patch that sets one is refused (400), so a field name
in a filter always means the same thing. Times are shown as ISO 8601 UTC with milliseconds and
stored as epoch seconds rounded to the millisecond, so a time read from a record and used in an
`eq` filter matches exactly.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import orjson

from frazil.errors import BadRequest, PayloadTooLarge
from frazil.jsonbounds import JsonBounds, check_json

PLATFORM_FIELDS = ("id", "created_by", "created_at", "updated_at")
TIME_FIELDS = ("created_at", "updated_at")

# Letters of either case: code written for other platforms names its collections in camelCase
# (`userInfo`). Names are values in a column, never SQL identifiers, so case is just a
# distinction ("userInfo" and "userinfo" are two tables).
TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
# An id a caller chooses (DataService.put); the platform's own are 28 hex digits.
RECORD_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# A top-level field name: anything printable but '"', '\\' and '.', which would make it
# ambiguous inside a JSON path ('.' separates nested fields in filters). Nested keys are free.
FIELD_NAME = re.compile(r'^[^"\\.\x00-\x1f\x7f]{1,128}$')
# Top-level fields of one record or patch. SQLite merges a patch with one json_set() call per
# 50 fields, nested; its parser overflows near 40 levels (2,000 fields), so this stays well below.
MAX_FIELDS = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def check_table_name(name: str) -> str:
    if not isinstance(name, str) or not TABLE_NAME.match(name):
        raise BadRequest(f"invalid table name {name!r}: use letters, digits and '_', "
                         "starting with a letter, at most 63 characters")
    return name


def check_field_name(name: str, where: str) -> None:
    if not isinstance(name, str) or not FIELD_NAME.match(name):
        raise BadRequest(f"invalid field name {name!r} in {where}: 1-128 characters, without '\"', '\\', "
                         "'.' or control characters")


def check_fields(body, what: str, max_bytes: int, bounds: JsonBounds) -> bytes:
    """Validate a record (what="record") or a patch (what="patch"): its field names, its
    nesting within `bounds`, and only values every store keeps (frazil.jsonbounds); answer its
    JSON encoding."""
    if not isinstance(body, dict):
        raise BadRequest(f"a {what} must be a JSON object, not {_json_kind(body)}")
    if what == "patch" and not body:
        raise BadRequest("the patch is empty: give at least one field to set")
    if len(body) > MAX_FIELDS:
        raise BadRequest(f"the {what} has {len(body)} fields; the limit is {MAX_FIELDS} (nest them in "
                         "an object to keep more)")
    for key in body:
        check_field_name(key, f"the {what}")
        if key in PLATFORM_FIELDS:
            raise BadRequest(f"field {key!r} is set by the platform and cannot be written "
                             f"(reserved: {', '.join(PLATFORM_FIELDS)})")
    check_json(body, f"the {what}", bounds, storable=True)
    try:
        encoded = orjson.dumps(body)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise BadRequest(f"the {what} is not JSON-serializable: {exc}") from None
    if len(encoded) > max_bytes:
        raise PayloadTooLarge(f"the {what} is {len(encoded)} bytes of JSON; the limit is {max_bytes}",
                              limit=max_bytes)
    return encoded


def _json_kind(value) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__




# --- time -------------------------------------------------------------------------------

def now_ms() -> float:
    """The current time as epoch seconds on a whole millisecond."""
    return round(time.time() * 1000) / 1000


def iso(ts: float) -> str:
    ms = round(ts * 1000)
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_time(value, where: str) -> float:
    """Epoch seconds from a number or an ISO 8601 string (naive means UTC)."""
    if isinstance(value, bool):
        raise BadRequest(f"{where}: a time is an ISO 8601 string or epoch seconds, not a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise BadRequest(f"{where}: {value!r} is not an ISO 8601 time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        us = (dt - _EPOCH) // timedelta(microseconds=1)
        # Same arithmetic as now_ms() on whole milliseconds, so equality with stored times holds.
        return (us // 1000) / 1000 if us % 1000 == 0 else us / 1_000_000
    raise BadRequest(f"{where}: a time is an ISO 8601 string or epoch seconds, not {_json_kind(value)}")


# --- the view -----------------------------------------------------------------------------

def view(row) -> dict:
    """The record as callers see it, from a `data_records` row."""
    data = row.data
    if isinstance(data, (str, bytes)):  # a driver that hands JSON back undecoded
        data = orjson.loads(data)
    return {"id": row.id, "created_by": row.created_by, "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at), **data}
