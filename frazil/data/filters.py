"""The filter language: parsing (strict, dialect-free) and compiling to SQLAlchemy Core.

    where  := { field: condition, ... }              all conditions must hold (AND)
    field  := a record field; "a.b" reaches into nested objects; id, created_by, created_at and
              updated_at are the platform's fields
    condition := value                               shorthand for {"eq": value}
               | { op: value, ... }                  several operators: all must hold

Operators and what they match (comparisons are typed, like MongoDB's: a string never equals or
orders against a number, and a record whose field is missing or of another kind just does not
match `eq`/`lt`/..., while it does match `ne`):
- `eq` v: the field equals v; v is a string, number, boolean or null. `eq null` matches a field
  that is null or missing. Numbers compare as numbers (1 == 1.0).
- `ne` v: exactly the records `eq` v does not match (missing fields included).
- `lt`, `lte`, `gt`, `gte` v: v is a number (numeric order) or a string (code-point order,
  which also orders ISO 8601 times); the field must be of the same kind.
- `in` [v, ...]: `eq` any of the values (at most 1000); `[]` matches nothing.
- `nin` [v, ...]: exactly the records `in` the same values does not match.
- `exists` true/false: the field is present (whatever its value, null included) / missing.
- `contains` v: the field is an array with an element equal to v (v a string, number or
  boolean), or - when v is a string - the field is a string that has v as a substring
  (case-sensitive).
Values are what the store keeps (frazil.jsonbounds): no string holds U+0000, and every number's
magnitude is below 2**63; anything else is refused (400).
Platform fields: `id` takes strings (eq/ne/in and orderings); `created_by` takes a user id or
null (eq/ne/in); `created_at`/`updated_at` take ISO 8601 strings or epoch seconds (all but
`contains`).

Sorting (`order`): "field" or "-field" (descending), comma-separated for several keys; a field
of mixed kinds sorts missing/null < false < true < numbers < strings < arrays < objects, and
ties are broken by id (creation order).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, false, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from frazil.data.jsonsql import Kind, Path
from frazil.data.records import FIELD_NAME, PLATFORM_FIELDS, TIME_FIELDS, parse_time
from frazil.data.schema import data_records
from frazil.errors import BadRequest
from frazil.jsonbounds import check_storable_scalar

MAX_CONDITIONS = 64
MAX_IN_VALUES = 1000
MAX_SORT_KEYS = 4
MAX_DEPTH = 16  # nested keys in one field path


class Op(str, enum.Enum):
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    IN = "in"
    NIN = "nin"
    CONTAINS = "contains"
    EXISTS = "exists"


ORDERINGS = (Op.LT, Op.LTE, Op.GT, Op.GTE)
_OPS = ", ".join(op.value for op in Op)


@dataclass(frozen=True)
class Condition:
    """One validated `field op value`; `path` has one element for a platform field."""

    path: Path
    op: Op
    value: Any

    @property
    def platform(self) -> bool:
        return len(self.path) == 1 and self.path[0] in PLATFORM_FIELDS


@dataclass(frozen=True)
class SortKey:
    path: Path
    descending: bool = False


# --- parsing -------------------------------------------------------------------------------

def parse_where(where) -> list[Condition]:
    if where is None:
        return []
    if not isinstance(where, dict):
        raise BadRequest('where must be a JSON object like {"field": {"eq": 1}}')
    conditions: list[Condition] = []
    for field, condition in where.items():
        path = parse_path(field, "where")
        if isinstance(condition, dict):
            if not condition:
                raise BadRequest(f"where.{field}: an empty condition; use an operator ({_OPS})")
            items = list(condition.items())
        else:
            items = [("eq", condition)]
        for op_name, value in items:
            try:
                op = Op(op_name)
            except ValueError:
                raise BadRequest(f"where.{field}: unknown operator {op_name!r}; the operators are {_OPS} "
                                 "(to match an object, filter on its fields with 'a.b')") from None
            conditions.append(_condition(path, op, value, f"where.{field}.{op.value}"))
    if len(conditions) > MAX_CONDITIONS:
        raise BadRequest(f"where has {len(conditions)} conditions; the limit is {MAX_CONDITIONS}")
    return conditions


def parse_path(field, where: str) -> Path:
    if not isinstance(field, str) or not field:
        raise BadRequest(f"{where}: a field name must be a non-empty string")
    path = tuple(field.split("."))
    if len(path) > MAX_DEPTH:
        raise BadRequest(f"{where}: field {field!r} is nested deeper than {MAX_DEPTH} levels")
    for key in path:
        if not FIELD_NAME.match(key):
            raise BadRequest(f"{where}: invalid field name {field!r} ('.' separates nested fields; names "
                             "cannot hold '\"', '\\' or control characters)")
    if len(path) > 1 and path[0] in PLATFORM_FIELDS:
        raise BadRequest(f"{where}: {path[0]!r} is a platform field and has no nested fields")
    return path


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, bool)) or _is_number(v)


def _condition(path: Path, op: Op, value, where: str) -> Condition:
    if op is Op.EXISTS:
        if not isinstance(value, bool):
            raise BadRequest(f"{where}: 'exists' takes true or false")
        if len(path) == 1 and path[0] in PLATFORM_FIELDS:
            raise BadRequest(f"{where}: {path[0]!r} is a platform field: every record has it")
        return Condition(path, op, value)
    if op in (Op.IN, Op.NIN):
        if not isinstance(value, list):
            raise BadRequest(f"{where}: '{op.value}' takes an array of values")
        if len(value) > MAX_IN_VALUES:
            raise BadRequest(f"{where}: '{op.value}' takes at most {MAX_IN_VALUES} values, not {len(value)}")
        items = tuple(_value(path, Op.EQ, v, where) for v in value)
        return Condition(path, op, items)
    return Condition(path, op, _value(path, op, value, where))


def _value(path: Path, op: Op, v, where: str):
    """The value checked (and normalised) for the field's kind and the operator."""
    check_storable_scalar(v, where)  # a NUL or an out-of-range number could never match, and breaks SQL
    field = path[0] if len(path) == 1 else None
    if field == "id":
        if op is Op.CONTAINS or not isinstance(v, str):
            raise BadRequest(f"{where}: id takes a string with eq, ne, in, lt, lte, gt or gte")
        return v
    if field == "created_by":
        if op not in (Op.EQ, Op.NE) or not (v is None or isinstance(v, str)):
            raise BadRequest(f"{where}: created_by takes a user id or null with eq, ne or in")
        return v
    if field in TIME_FIELDS:
        if op is Op.CONTAINS:
            raise BadRequest(f"{where}: {field} does not support 'contains'")
        return parse_time(v, where)
    # A field of the user's record.
    if op is Op.CONTAINS:
        if v is None or not _scalar(v):
            raise BadRequest(f"{where}: 'contains' takes a string, number or boolean")
        return v
    if op in ORDERINGS:
        if not (isinstance(v, str) or _is_number(v)):
            raise BadRequest(f"{where}: '{op.value}' takes a number or a string")
        return v
    if not _scalar(v):
        hint = ("an array (to test an element, use 'contains')" if isinstance(v, list)
                else "an object (filter on its fields with 'field.key')")
        raise BadRequest(f"{where}: '{op.value}' takes a string, number, boolean or null, not {hint}")
    return v


def parse_order(order) -> list[SortKey]:
    """`"-created_at"`, `"name,-age"` or a list of such strings."""
    if order is None or order == "":
        return []
    parts = order.split(",") if isinstance(order, str) else order
    if not isinstance(parts, (list, tuple)) or not all(isinstance(p, str) for p in parts):
        raise BadRequest('order must be a field name, "-field" for descending, or a comma-separated list')
    if len(parts) > MAX_SORT_KEYS:
        raise BadRequest(f"order has {len(parts)} keys; the limit is {MAX_SORT_KEYS}")
    keys = []
    for part in parts:
        part = part.strip()
        descending = part.startswith("-")
        keys.append(SortKey(parse_path(part.lstrip("+-"), "order"), descending))
    return keys


# --- compiling -----------------------------------------------------------------------------

def compile_where(conditions: list[Condition], sql) -> ColumnElement:
    """AND of every condition; `sql` is the dialect's `frazil.data.jsonsql` implementation."""
    return and_(true(), *[_compile(c, sql) for c in conditions])


def _compile(c: Condition, sql) -> ColumnElement:
    if c.platform:
        return _compile_column(c)
    if c.op is Op.EQ:
        return _eq(c.path, c.value, sql)
    if c.op is Op.NE:
        return not_(_eq(c.path, c.value, sql))
    if c.op is Op.IN:
        return _in(c.path, c.value, sql)
    if c.op is Op.NIN:
        return not_(_in(c.path, c.value, sql))
    if c.op is Op.EXISTS:
        missing = sql.kind_in(c.path, Kind.MISSING)
        return not_(missing) if c.value else missing
    if c.op is Op.CONTAINS:
        if isinstance(c.value, str):
            return or_(and_(sql.kind_in(c.path, Kind.STRING), sql.has_substring(c.path, c.value)),
                       sql.array_has(c.path, c.value))
        return sql.array_has(c.path, c.value)
    # An ordering.
    if isinstance(c.value, str):
        return and_(sql.kind_in(c.path, Kind.STRING), _ordering(c.op, sql.text(c.path), c.value))
    return and_(sql.kind_in(c.path, Kind.NUMBER), _ordering(c.op, sql.number(c.path), float(c.value)))


def _eq(path: Path, v, sql) -> ColumnElement:
    if v is None:
        return sql.kind_in(path, Kind.MISSING, Kind.NULL)
    if isinstance(v, bool):
        return sql.kind_in(path, Kind.TRUE if v else Kind.FALSE)
    if isinstance(v, str):
        return and_(sql.kind_in(path, Kind.STRING), sql.text(path) == v)
    return and_(sql.kind_in(path, Kind.NUMBER), sql.number(path) == float(v))


def _in(path: Path, values: tuple, sql) -> ColumnElement:
    # One IN per kind rather than one OR branch per value.
    strings = sorted({v for v in values if isinstance(v, str)})
    numbers = sorted({float(v) for v in values if _is_number(v)})
    parts = []
    if strings:
        parts.append(and_(sql.kind_in(path, Kind.STRING), sql.text(path).in_(strings)))
    if numbers:
        parts.append(and_(sql.kind_in(path, Kind.NUMBER), sql.number(path).in_(numbers)))
    flags = [Kind.TRUE if v else Kind.FALSE for v in {v for v in values if isinstance(v, bool)}]
    if None in values:
        flags += [Kind.MISSING, Kind.NULL]
    if flags:
        parts.append(sql.kind_in(path, *flags))
    return or_(false(), *parts)


def _ordering(op: Op, left, right) -> ColumnElement:
    if op is Op.LT:
        return left < right
    if op is Op.LTE:
        return left <= right
    if op is Op.GT:
        return left > right
    return left >= right


def _compile_column(c: Condition) -> ColumnElement:
    column = data_records.c[c.path[0]]
    if c.op is Op.EQ:
        return column.is_not_distinct_from(c.value) if c.value is None else column == c.value
    if c.op is Op.NE:
        # created_by may be NULL: a NULL is "not equal" to any user id.
        return column.is_distinct_from(c.value)
    if c.op in (Op.IN, Op.NIN):
        values = [v for v in c.value if v is not None]
        parts = [column.in_(values)] if values else []
        if None in c.value:
            parts.append(column.is_(None))
        # created_by may be NULL: IN is made two-valued before NOT takes its complement.
        matched = or_(false(), *[and_(column.is_not(None), p) if i == 0 and values else p
                                 for i, p in enumerate(parts)])
        return matched if c.op is Op.IN else not_(matched)
    return _ordering(c.op, column, c.value)


def compile_order(keys: list[SortKey], sql) -> list[ColumnElement]:
    """ORDER BY terms, always ending with `id` so that pages are stable."""
    terms = []
    for key in keys:
        if key.path[0] in PLATFORM_FIELDS:
            column = data_records.c[key.path[0]]
            terms.append(column.desc().nulls_last() if key.descending else column.asc().nulls_first())
            if key.path[0] == "id":
                return terms
            continue
        for expr in (sql.sort_rank(key.path), sql.number(key.path), sql.text(key.path)):
            terms.append(expr.desc() if key.descending else expr.asc())
    terms.append(data_records.c.id.asc())
    return terms
