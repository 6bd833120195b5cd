"""`DataService`: every operation on BaaS tables and records, for every caller.

The HTTP routes pass the principal their token resolves to; the in-function SDK passes `ADMIN`.
Each operation looks the table up, asks `acl.authorize` (the one ACL decision) for a scope, and
runs one SQL statement restricted to that scope. Errors are `frazil.errors` exceptions (400,
401, 403, 404, 409, 413) that the API turns into JSON and the SDK into exceptions.

Order of checks: names and arguments (400) → the table exists (404) → the ACL (401/403) →
the body and filter (400/413).

Tables come into existence through `put_table`/`create_table` (admin), or implicitly when the
admin principal (a function through the SDK, or the admin key) inserts into an unknown table:
it is created with the closed ACL admin/admin. Anyone else writing an unknown table gets 404.

Every write is a single statement (no read-then-write transaction): SQLite in WAL mode refuses
to upgrade a read transaction to a write one once another writer has committed.
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import Float, String, and_, delete, exists, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from frazil.data.accounts import Accounts
from frazil.data.acl import Acl, AclMode, Action, Principal, Scope, authorize, require_admin
from frazil.data.filters import compile_order, compile_where, parse_order, parse_where
from frazil.data.jsonsql import for_dialect
from frazil.data.records import check_fields, check_table_name, iso, now_ms, view
from frazil.data.schema import data_records, data_tables
from frazil.errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized
from frazil.settings import Settings
from frazil.store.ids import new_id
from frazil.store.sql import insert_ignore

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_records = data_records


@dataclass(frozen=True)
class TableInfo:
    name: str
    acl: Acl
    created_at: float
    updated_at: float
    records: int | None = None  # counted only where asked for

    def view(self) -> dict:
        out = {"name": self.name, "acl": self.acl.view(), "created_at": iso(self.created_at),
               "updated_at": iso(self.updated_at)}
        if self.records is not None:
            out["records"] = self.records
        return out


def _table_info(row, records: int | None = None) -> TableInfo:
    return TableInfo(row.name, Acl(AclMode(row.read_acl), AclMode(row.write_acl)), row.created_at, row.updated_at,
                     records)


def _in_scope(scope: Scope):
    return _records.c.created_by == scope.owner


class DataService:
    def __init__(self, engine: AsyncEngine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.sql = for_dialect(engine.dialect.name)
        self.accounts = Accounts(engine, settings)

    # --- tables (admin only) --------------------------------------------------------------

    async def put_table(self, name: str, acl: Acl | dict | None, principal: Principal) -> tuple[TableInfo, bool]:
        """Create the table or replace its ACL; answers the table and whether it was created.
        A mode missing from `acl` is `admin`."""
        require_admin(principal, "create tables or change their ACL")
        check_table_name(name)
        acl = Acl.parse(acl)
        now = now_ms()
        async with self.engine.begin() as conn:
            created = (await insert_ignore(conn, data_tables, dict(
                name=name, read_acl=acl.read.value, write_acl=acl.write.value, created_at=now, updated_at=now,
            ))).rowcount == 1
            if not created:
                await conn.execute(update(data_tables).where(data_tables.c.name == name).values(
                    read_acl=acl.read.value, write_acl=acl.write.value, updated_at=now))
            row = (await conn.execute(select(data_tables).where(data_tables.c.name == name))).one()
        return _table_info(row), created

    async def create_table(self, name: str, acl: Acl | dict | None, principal: Principal) -> TableInfo:
        """Like `put_table`, but 409 when the table exists."""
        require_admin(principal, "create tables")
        check_table_name(name)
        acl = Acl.parse(acl)
        now = now_ms()
        async with self.engine.begin() as conn:
            if (await insert_ignore(conn, data_tables, dict(
                    name=name, read_acl=acl.read.value, write_acl=acl.write.value, created_at=now,
                    updated_at=now))).rowcount != 1:
                raise Conflict(f"table {name!r} already exists")
        return TableInfo(name, acl, now, now)

    async def get_table(self, name: str, principal: Principal) -> TableInfo:
        require_admin(principal, "read a table's settings")
        check_table_name(name)
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(data_tables).where(data_tables.c.name == name))).first()
            if row is None:
                raise NotFound(f"no table {name!r}")
            count = (await conn.execute(select(func.count()).select_from(_records)
                                        .where(_records.c.table_name == name))).scalar_one()
        return _table_info(row, count)

    async def list_tables(self, principal: Principal) -> list[TableInfo]:
        require_admin(principal, "list tables")
        async with self.engine.connect() as conn:
            counts = dict((await conn.execute(select(_records.c.table_name, func.count())
                                              .group_by(_records.c.table_name))).all())
            rows = (await conn.execute(select(data_tables).order_by(data_tables.c.name))).all()
        return [_table_info(row, counts.get(row.name, 0)) for row in rows]

    async def drop_table(self, name: str, principal: Principal) -> int:
        """Delete the table and all its records; answers how many records went."""
        require_admin(principal, "drop tables")
        check_table_name(name)
        async with self.engine.begin() as conn:
            if (await conn.execute(delete(data_tables).where(data_tables.c.name == name))).rowcount == 0:
                raise NotFound(f"no table {name!r}")
            return (await conn.execute(delete(_records).where(_records.c.table_name == name))).rowcount

    # --- records --------------------------------------------------------------------------

    async def insert(self, table: str, record: dict, principal: Principal) -> dict:
        """Store a new record; answers it with its platform fields."""
        check_table_name(table)
        async with self.engine.connect() as conn:
            acl = await self._acl(conn, table, missing_ok=principal.is_admin)
        if acl is None:  # only the admin gets here
            acl = await self._create_closed(table)
        authorize(acl.write, principal, Action.WRITE, table)
        # Normalised to plain JSON types: what is stored is exactly what is answered.
        record = orjson.loads(check_fields(record, "record", self.settings.max_record_bytes))
        record_id, now = new_id(), now_ms()
        created_by = principal.user_id  # None for the admin and for anonymous writers
        values = select(literal(table, String), literal(record_id, String), literal(created_by, String),
                        literal(now, Float), literal(now, Float), literal(record, _records.c.data.type))
        # INSERT ... SELECT ... WHERE the table exists: a concurrent drop cannot leave orphans.
        values = values.where(exists(select(data_tables.c.name).where(data_tables.c.name == table)))
        stmt = _records.insert().from_select(
            ["table_name", "id", "created_by", "created_at", "updated_at", "data"], values)
        async with self.engine.begin() as conn:
            if (await conn.execute(stmt)).rowcount != 1:
                raise NotFound(f"no table {table!r} (it was dropped)")
        return {"id": record_id, "created_by": created_by, "created_at": iso(now), "updated_at": iso(now), **record}

    async def find(self, table: str, where: dict | None, principal: Principal, *, order=None,
                   limit: int = DEFAULT_LIMIT, offset: int = 0) -> list[dict]:
        """The records matching `where` (see frazil.data.filters), sorted by `order` (default:
        creation order), at most `limit` (≤ 1000) after skipping `offset`."""
        check_table_name(table)
        limit, offset = _page(limit, offset)
        async with self.engine.connect() as conn:
            scope = authorize((await self._acl(conn, table)).read, principal, Action.READ, table)
            condition = self._where(table, where, scope)
            terms = compile_order(parse_order(order), self.sql)
            rows = await conn.execute(select(_records).where(condition).order_by(*terms).limit(limit).offset(offset))
            return [view(row) for row in rows]

    async def count(self, table: str, where: dict | None, principal: Principal) -> int:
        check_table_name(table)
        async with self.engine.connect() as conn:
            scope = authorize((await self._acl(conn, table)).read, principal, Action.READ, table)
            condition = self._where(table, where, scope)
            return (await conn.execute(select(func.count()).select_from(_records).where(condition))).scalar_one()

    async def get(self, table: str, record_id: str, principal: Principal) -> dict:
        check_table_name(table)
        async with self.engine.connect() as conn:
            scope = authorize((await self._acl(conn, table)).read, principal, Action.READ, table)
            row = (await conn.execute(select(_records).where(self._by_id(table, record_id, scope)))).first()
        if row is None:
            raise NotFound(f"no record {record_id!r} in table {table!r}")
        return view(row)

    async def update(self, table: str, where: dict, patch: dict, principal: Principal) -> int:
        """Set the patch's fields (a shallow merge) on every matching record; answers how many."""
        check_table_name(table)
        async with self.engine.connect() as conn:
            scope = authorize((await self._acl(conn, table)).write, principal, Action.WRITE, table)
        condition = self._where(table, _required(where), scope)
        patch = orjson.loads(check_fields(patch, "patch", self.settings.max_record_bytes))
        async with self.engine.begin() as conn:
            stmt = self._update(condition, patch).returning(_records.c.id, self.sql.size().label("size"))
            rows = (await conn.execute(stmt)).all()
            self._check_sizes(rows)
        return len(rows)

    async def update_one(self, table: str, record_id: str, patch: dict, principal: Principal) -> dict:
        """Patch one record by id; answers the updated record (only its id and times when the
        caller may write but not read it)."""
        check_table_name(table)
        async with self.engine.connect() as conn:
            acl = await self._acl(conn, table)
        scope = authorize(acl.write, principal, Action.WRITE, table)
        patch = orjson.loads(check_fields(patch, "patch", self.settings.max_record_bytes))
        async with self.engine.begin() as conn:
            row = (await conn.execute(self._update(self._by_id(table, record_id, scope), patch)
                                      .returning(*_records.c, self.sql.size().label("size")))).first()
            if row is None:
                raise NotFound(f"no record {record_id!r} in table {table!r}")
            self._check_sizes([row])
        return self._redact(view(row), acl, principal)

    async def delete(self, table: str, where: dict, principal: Principal) -> int:
        """Delete every matching record; answers how many."""
        check_table_name(table)
        async with self.engine.connect() as conn:
            scope = authorize((await self._acl(conn, table)).write, principal, Action.WRITE, table)
        condition = self._where(table, _required(where), scope)
        async with self.engine.begin() as conn:
            return (await conn.execute(delete(_records).where(condition))).rowcount

    async def delete_one(self, table: str, record_id: str, principal: Principal) -> dict:
        """Delete one record by id; answers it as it was (redacted like `update_one`)."""
        check_table_name(table)
        async with self.engine.connect() as conn:
            acl = await self._acl(conn, table)
        scope = authorize(acl.write, principal, Action.WRITE, table)
        async with self.engine.begin() as conn:
            row = (await conn.execute(delete(_records).where(self._by_id(table, record_id, scope))
                                      .returning(*_records.c))).first()
        if row is None:
            raise NotFound(f"no record {record_id!r} in table {table!r}")
        return self._redact(view(row), acl, principal)

    # --- helpers --------------------------------------------------------------------------

    async def _acl(self, conn: AsyncConnection, table: str, *, missing_ok: bool = False) -> Acl | None:
        row = (await conn.execute(select(data_tables.c.read_acl, data_tables.c.write_acl)
                                  .where(data_tables.c.name == table))).first()
        if row is not None:
            return Acl(AclMode(row.read_acl), AclMode(row.write_acl))
        if missing_ok:
            return None
        raise NotFound(f"no table {table!r}")

    async def _create_closed(self, table: str) -> Acl:
        """Create `table` with the admin/admin ACL unless it exists (then answer its ACL).
        Never called while holding another connection: nested checkouts can starve the pool."""
        now = now_ms()
        async with self.engine.begin() as conn:
            await insert_ignore(conn, data_tables, dict(name=table, read_acl=AclMode.ADMIN.value,
                                                        write_acl=AclMode.ADMIN.value, created_at=now, updated_at=now))
        async with self.engine.connect() as conn:
            return await self._acl(conn, table)

    def _where(self, table: str, where, scope: Scope):
        condition = and_(_records.c.table_name == table, compile_where(parse_where(where), self.sql))
        return condition if scope.everything else and_(condition, _in_scope(scope))

    @staticmethod
    def _by_id(table: str, record_id: str, scope: Scope):
        if not isinstance(record_id, str) or not record_id:
            raise BadRequest("a record id is a non-empty string")
        condition = and_(_records.c.table_name == table, _records.c.id == record_id)
        return condition if scope.everything else and_(condition, _in_scope(scope))

    def _update(self, condition, patch: dict):
        return update(_records).where(condition).values(data=self.sql.merge(patch), updated_at=now_ms())

    def _check_sizes(self, rows) -> None:
        limit = self.settings.max_record_bytes
        too_big = [row for row in rows if row.size is not None and row.size > limit]
        if too_big:  # raised inside the transaction: nothing was changed
            raise PayloadTooLarge(f"the update would make record {too_big[0].id!r} {too_big[0].size} bytes of JSON; "
                                  f"the limit is {limit}", limit=limit)

    @staticmethod
    def _redact(record: dict, acl: Acl, principal: Principal) -> dict:
        """The record, if the caller may read it; else only what the write told them anyway."""
        try:
            scope = authorize(acl.read, principal, Action.READ, "")
        except (Unauthorized, Forbidden):
            scope = None
        if scope is not None and (scope.everything or record["created_by"] == scope.owner):
            return record
        return {"id": record["id"], "created_at": record["created_at"], "updated_at": record["updated_at"]}


def _page(limit, offset) -> tuple[int, int]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise BadRequest(f"offset must be a non-negative integer, not {offset!r}")
    return limit, offset


def _required(where):
    if not isinstance(where, dict):
        raise BadRequest("a bulk update or delete needs a where object ({} matches every record)")
    return where

