"""The few JSON expressions the filter compiler needs, one implementation per dialect.

Everything above this module (operators, scopes, sorting) is dialect-free; everything that
differs between SQLite's JSON1 functions and PostgreSQL's JSONB lives here, behind `for_dialect`.

Invariant: `kind_in` is never NULL (a missing field has the kind MISSING), and `number` /
`text` are only compared after a `kind_in` guard in the same AND, so every filter expression is
two-valued and `NOT` of it is the exact complement (needed by `ne`).
"""
from __future__ import annotations

import enum
from typing import Protocol

import orjson
from sqlalchemy import Float, LargeBinary, Numeric, String, Text, and_, case, cast, collate, exists, func, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.elements import ColumnElement

from frazil.data.schema import data_records

Path = tuple[str, ...]  # top-level field, then nested keys


class Kind(enum.Enum):
    MISSING = "missing"
    NULL = "null"
    FALSE = "false"
    TRUE = "true"
    NUMBER = "number"
    STRING = "string"
    ARRAY = "array"
    OBJECT = "object"


# The order used when sorting by a field of mixed kinds (missing and null first, like MongoDB).
SORT_RANK = {Kind.MISSING: 0, Kind.NULL: 0, Kind.FALSE: 1, Kind.TRUE: 2, Kind.NUMBER: 3, Kind.STRING: 4,
             Kind.ARRAY: 5, Kind.OBJECT: 6}

_data = data_records.c.data


class JsonSql(Protocol):
    """SQL expressions over the `data` column of `data_records`, for one dialect."""

    name: str

    def kind_in(self, path: Path, *kinds: Kind) -> ColumnElement:
        """True when the value at `path` is of one of `kinds` (never NULL)."""

    def number(self, path: Path) -> ColumnElement:
        """The value as a float; NULL unless it is a number."""

    def text(self, path: Path) -> ColumnElement:
        """The value as text in code-point order; compare only when it is a string."""

    def has_substring(self, path: Path, needle: str) -> ColumnElement:
        """The (string) value contains `needle`, case-sensitively."""

    def array_has(self, path: Path, value) -> ColumnElement:
        """The value is an array with an element equal to the scalar `value` (typed)."""

    def sort_rank(self, path: Path) -> ColumnElement:
        """SORT_RANK of the value's kind."""

    def merge(self, patch: dict) -> ColumnElement:
        """`data` with the patch's top-level fields set (a shallow merge; null is kept)."""

    def size(self) -> ColumnElement:
        """Bytes of the stored JSON text (what the record size limit is checked against)."""

    def inc(self, data: ColumnElement, field: str, n) -> ColumnElement:
        """`data` with the top-level number `field` (0 when missing or null) plus n; the
        caller makes sure the stored field is a number, missing or null."""

    def push(self, data: ColumnElement, field: str, values: list) -> ColumnElement:
        """`data` with `values` appended to the top-level array `field` (set to them when it is
        missing or null)."""

    def remove(self, data: ColumnElement, field: str) -> ColumnElement:
        """`data` without the top-level `field`."""

# SQLite's json_type() names; each of ours maps to one or more.
_SQLITE_KINDS = {Kind.NULL: ("null",), Kind.FALSE: ("false",), Kind.TRUE: ("true",),
                 Kind.NUMBER: ("integer", "real"), Kind.STRING: ("text",), Kind.ARRAY: ("array",),
                 Kind.OBJECT: ("object",), Kind.MISSING: ("missing",)}


class SqliteJson:
    """SQLite's JSON1 functions over the TEXT-stored `data` column."""

    name = "sqlite"

    @staticmethod
    def _path(path: Path) -> str:
        # Field names cannot hold '"' (records.FIELD_NAME), so quoting each key is exact.
        return "$" + "".join(f'."{key}"' for key in path)

    def _type(self, path: Path) -> ColumnElement:
        return func.coalesce(func.json_type(_data, self._path(path)), "missing")

    def kind_in(self, path: Path, *kinds: Kind) -> ColumnElement:
        names = [n for k in kinds for n in _SQLITE_KINDS[k]]
        return self._type(path).in_(names)

    def number(self, path: Path) -> ColumnElement:
        return func.json_extract(_data, self._path(path))

    def text(self, path: Path) -> ColumnElement:
        return func.json_extract(_data, self._path(path), type_=String)

    def has_substring(self, path: Path, needle: str) -> ColumnElement:
        return func.instr(self.text(path), needle) > 0

    def array_has(self, path: Path, value) -> ColumnElement:
        element = func.json_each(_data, self._path(path)).table_valued("value", "type").alias("element")
        if isinstance(value, bool):
            match = element.c.type == ("true" if value else "false")
        elif isinstance(value, str):
            match = and_(element.c.type == "text", element.c.value == value)
        else:
            match = and_(element.c.type.in_(("integer", "real")), element.c.value == value)
        # json_each also walks objects: only an array counts.
        return and_(self.kind_in(path, Kind.ARRAY), exists(select(literal(1)).select_from(element).where(match)))

    def sort_rank(self, path: Path) -> ColumnElement:
        whens = [(self._type(path) == n, SORT_RANK[k]) for k, names in _SQLITE_KINDS.items() for n in names]
        return case(*whens, else_=0)

    def merge(self, patch: dict) -> ColumnElement:
        """`data` with the patch's top-level fields replaced (a shallow merge, nulls kept)."""
        expr = _data
        items = list(patch.items())
        # json_set takes 2n+1 arguments; stay far below SQLite's function-argument limit.
        for start in range(0, len(items), 50):
            args = []
            for key, value in items[start:start + 50]:
                args += [self._path((key,)), func.json(orjson.dumps(value).decode())]
            expr = func.json_set(expr, *args, type_=_data.type)
        return expr

    def size(self) -> ColumnElement:
        return func.length(cast(_data, LargeBinary))

    # The atomic ops read the field from the stored `_data` (ops touch distinct fields).
    def inc(self, data: ColumnElement, field: str, n) -> ColumnElement:
        path = self._path((field,))
        return func.json_set(data, path, func.coalesce(func.json_extract(_data, path), 0) + n, type_=_data.type)

    def push(self, data: ColumnElement, field: str, values: list) -> ColumnElement:
        path = self._path((field,))
        appended = func.json_insert(data, *[arg for v in values for arg in (path + "[#]", func.json(_json(v)))],
                                    type_=_data.type)
        return case((self._type((field,)) == "array", appended),
                    else_=func.json_set(data, path, func.json(_json(values)), type_=_data.type))

    def remove(self, data: ColumnElement, field: str) -> ColumnElement:
        return func.json_remove(data, self._path((field,)), type_=_data.type)


class PostgresJson:
    """PostgreSQL's JSONB functions; strings compare in the C collation (code-point order, the
    same as SQLite's BINARY), whatever the database's default collation is."""

    name = "postgresql"

    _NAMES = {Kind.NULL: "null", Kind.NUMBER: "number", Kind.STRING: "string", Kind.ARRAY: "array",
              Kind.OBJECT: "object", Kind.MISSING: "missing"}

    @staticmethod
    def _value(path: Path) -> ColumnElement:
        return func.jsonb_extract_path(_data, *path, type_=JSONB)

    def _type(self, path: Path) -> ColumnElement:
        return func.coalesce(func.jsonb_typeof(self._value(path)), "missing")

    def _raw_text(self, path: Path) -> ColumnElement:
        return func.jsonb_extract_path_text(_data, *path, type_=String)

    def kind_in(self, path: Path, *kinds: Kind) -> ColumnElement:
        kind = self._type(path)
        names = {self._NAMES[k] for k in kinds if k in self._NAMES}
        flags = {k for k in kinds if k in (Kind.TRUE, Kind.FALSE)}
        parts = []
        if len(flags) == 2:
            names.add("boolean")
        elif flags:
            # Guarded by the kind, the text is never NULL: the AND stays two-valued.
            parts.append(and_(kind == "boolean", self._raw_text(path) == flags.pop().value))
        if names:
            parts.insert(0, kind.in_(sorted(names)))
        return parts[0] if len(parts) == 1 else or_(*parts)

    def number(self, path: Path) -> ColumnElement:
        # The CASE keeps the cast from ever seeing a non-number (SQL does not order ANDs).
        return case((self._type(path) == "number", cast(self._raw_text(path), Float)))

    def text(self, path: Path) -> ColumnElement:
        return collate(self._raw_text(path), "C")

    def has_substring(self, path: Path, needle: str) -> ColumnElement:
        return func.strpos(self._raw_text(path), needle) > 0

    def array_has(self, path: Path, value) -> ColumnElement:
        return and_(self.kind_in(path, Kind.ARRAY), self._value(path).op("@>")(literal([value], JSONB)))

    def sort_rank(self, path: Path) -> ColumnElement:
        kind = self._type(path)
        return case((and_(kind == "boolean", self._raw_text(path) == "true"), SORT_RANK[Kind.TRUE]),
                    (kind == "boolean", SORT_RANK[Kind.FALSE]),
                    *[(kind == name, SORT_RANK[k]) for k, name in self._NAMES.items()], else_=0)

    def merge(self, patch: dict) -> ColumnElement:
        return _data.op("||")(literal(patch, JSONB))

    def size(self) -> ColumnElement:
        return func.octet_length(cast(_data, String))

    def inc(self, data: ColumnElement, field: str, n) -> ColumnElement:
        current = case((self._type((field,)) == "number", cast(self._raw_text((field,)), Numeric)), else_=0)
        total = func.to_jsonb(current + literal(n, Numeric), type_=JSONB)
        return func.jsonb_set(data, _key(field), total, True, type_=JSONB)

    def push(self, data: ColumnElement, field: str, values: list) -> ColumnElement:
        added = literal(values, JSONB)
        merged = case((self._type((field,)) == "array", self._value((field,)).op("||")(added)), else_=added)
        return func.jsonb_set(data, _key(field), merged, True, type_=JSONB)

    def remove(self, data: ColumnElement, field: str) -> ColumnElement:
        return data.op("-")(literal(field, String))


def _key(field: str) -> ColumnElement:
    """A one-key path for PostgreSQL's jsonb_set (text[])."""
    return literal([field], ARRAY(Text))


def _json(value) -> str:
    return orjson.dumps(value).decode()


def for_dialect(name: str) -> JsonSql:
    if name == "sqlite":
        return SqliteJson()
    if name == "postgresql":
        return PostgresJson()
    raise ValueError(f"the data store supports SQLite and PostgreSQL, not {name}")
