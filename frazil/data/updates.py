"""Atomic field operations of a bulk update: done by the database inside the one UPDATE statement,
so two invocations that both add 1 to a counter end with 2, never 1 (no read-then-write).

    ops := { field: { "inc": n } | { "push": [v, ...] } | { "remove": true }, ... }

- `inc` n: add the number n to the field; a missing or null field counts as 0. A record whose
  field holds anything but a number is not updated (it does not match, and is not counted).
- `push` [v, ...]: append the values to the array; a missing or null field becomes the array of
  the values. A record whose field holds anything but an array is not updated.
- `remove` true: delete the field from the record (a missing field stays missing).

Fields are top-level record fields (no "a.b" paths), none of the platform's, and each appears
once across the patch and the ops. A result number must stay storable (frazil.jsonbounds): an
`inc` that would leave the range does not update that record.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, true
from sqlalchemy.sql.elements import ColumnElement

from frazil.data.jsonsql import Kind
from frazil.data.records import MAX_FIELDS, PLATFORM_FIELDS, check_field_name
from frazil.errors import BadRequest
from frazil.jsonbounds import STORED_MAGNITUDE_LIMIT, JsonBounds, check_json

MAX_PUSH_VALUES = 1000


class UpdateOp(str, enum.Enum):
    INC = "inc"
    PUSH = "push"
    REMOVE = "remove"


_NAMES = ", ".join(op.value for op in UpdateOp)


@dataclass(frozen=True)
class FieldOp:
    field: str
    op: UpdateOp
    value: Any  # inc: a number; push: a list of values; remove: None


def parse_ops(ops, patch_fields, bounds: JsonBounds) -> list[FieldOp]:
    """Validated ops (see the module docstring); `patch_fields` are the fields the same update sets."""
    if ops is None:
        return []
    if not isinstance(ops, dict):
        raise BadRequest('ops must be a JSON object like {"count": {"inc": 1}}')
    if len(ops) > MAX_FIELDS:
        raise BadRequest(f"ops name {len(ops)} fields; the limit is {MAX_FIELDS}")
    parsed = []
    for name, spec in ops.items():
        check_field_name(name, "ops")
        if name in PLATFORM_FIELDS:
            raise BadRequest(f"ops.{name}: {name!r} is set by the platform and cannot be written")
        if name in patch_fields:
            raise BadRequest(f"ops.{name}: the field is also in the patch; an update changes a field once")
        if not isinstance(spec, dict) or len(spec) != 1:
            raise BadRequest(f"ops.{name}: give exactly one operation ({_NAMES}), like {{\"inc\": 1}}")
        (op_name, value), = spec.items()
        try:
            op = UpdateOp(op_name)
        except ValueError:
            raise BadRequest(f"ops.{name}: unknown operation {op_name!r}; the operations are {_NAMES}") from None
        parsed.append(FieldOp(name, op, _value(op, value, f"ops.{name}.{op.value}", bounds)))
    return parsed


def _value(op: UpdateOp, value, where: str, bounds: JsonBounds):
    if op is UpdateOp.INC:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or abs(value) >= STORED_MAGNITUDE_LIMIT:
            raise BadRequest(f"{where}: 'inc' takes a number")
        return value
    if op is UpdateOp.PUSH:
        if not isinstance(value, list) or not value:
            raise BadRequest(f"{where}: 'push' takes a non-empty array of the values to append")
        if len(value) > MAX_PUSH_VALUES:
            raise BadRequest(f"{where}: 'push' takes at most {MAX_PUSH_VALUES} values, not {len(value)}")
        check_json(value, where, bounds, storable=True)
        return value
    if value is not True:
        raise BadRequest(f"{where}: 'remove' takes true")
    return None


def compile_ops(ops: list[FieldOp], data: ColumnElement, sql) -> tuple[ColumnElement, ColumnElement]:
    """(the new `data` expression built on `data`, the condition a record must meet for every op
    to apply). Each op reads its field from the stored record: ops touch distinct fields, so the
    order they are nested in does not matter."""
    guards = []
    for each in ops:
        path = (each.field,)
        if each.op is UpdateOp.INC:
            data = sql.inc(data, each.field, each.value)
            # The result stays storable: |current + n| < 2**63 (compared as floats, on the safe side).
            limit = float(STORED_MAGNITUDE_LIMIT) - abs(float(each.value)) - 1024.0
            guards.append(sql.kind_in(path, Kind.NUMBER, Kind.MISSING, Kind.NULL))
            guards.append(_within(sql.number(path), limit))
        elif each.op is UpdateOp.PUSH:
            data = sql.push(data, each.field, each.value)
            guards.append(sql.kind_in(path, Kind.ARRAY, Kind.MISSING, Kind.NULL))
        else:
            data = sql.remove(data, each.field)
    return data, and_(true(), *guards)


def _within(number: ColumnElement, limit: float) -> ColumnElement:
    """NULL-safe: a field that is not a number (missing, null) passes."""
    return func.abs(func.coalesce(number, 0.0)) < limit
