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
to upgrade a read transaction to a write one once another writer has committed. A write that a
table trigger listens to (frazil.data.changes) is one transaction with what it fires; an update
then also reads the records as they were, under the write lock (`_update_seeing_old`).
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import Float, String, and_, delete, exists, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from frazil.data.accounts import Accounts
from frazil.data.acl import EVERYTHING, Acl, AclMode, Action, Principal, PrincipalKind, Scope, authorize, require_admin
from frazil.data.changes import Change, ChangeOp, ChangeSink, Origin
from frazil.data.filters import compile_order, compile_where, parse_order, parse_where
from frazil.data.jsonsql import for_dialect
from frazil.data.records import RECORD_ID, check_fields, check_table_name, iso, now_ms, view
from frazil.data.schema import data_records, data_tables, data_users
from frazil.data.updates import FieldOp, compile_ops, parse_ops
from frazil.errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized
from frazil.jsonbounds import JsonBounds, check_storable_scalar
from frazil.settings import Settings
from frazil.store.ids import new_id
from frazil.store.sql import insert_ignore

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_records = data_records
_UNREPORTED = object()  # a write that changed no record: the sink is told nothing


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
    def __init__(self, engine: AsyncEngine, settings: Settings, changes: ChangeSink | None = None):
        self.engine = engine
        self.settings = settings
        self.changes = changes  # told of every change of a record (table triggers)
        self.sql = for_dialect(engine.dialect.name)
        self.bounds = JsonBounds.from_settings(settings)
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

    async def list_tables(self, principal: Principal, *, after: str | None = None,
                          limit: int | None = None) -> list[TableInfo]:
        """Tables by name with their record counts; with `after`, only names after it (a page)."""
        require_admin(principal, "list tables")
        query = select(data_tables).order_by(data_tables.c.name).limit(limit)
        if after is not None:
            query = query.where(data_tables.c.name > after)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            # Counted for this page's tables only: each count is a range of the primary key.
            names = [row.name for row in rows]
            counts = dict((await conn.execute(select(_records.c.table_name, func.count())
                                              .where(_records.c.table_name.in_(names))
                                              .group_by(_records.c.table_name))).all()) if names else {}
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

    async def insert(self, table: str, record: dict, principal: Principal, *, origin: Origin | None = None) -> dict:
        """Store a new record; answers it with its platform fields. `origin`: who the
        invocations it fires are started by (default: the principal's end user)."""
        check_table_name(table)
        async with self.engine.connect() as conn:
            acl = await self._acl(conn, table, missing_ok=principal.is_admin)
        if acl is None:  # only the admin gets here
            acl = await self._create_closed(table)
        authorize(acl.write, principal, Action.WRITE, table)
        # Normalised to plain JSON types: what is stored is exactly what is answered.
        record = orjson.loads(check_fields(record, "record", self.settings.max_record_bytes, self.bounds))
        record_id, now = new_id(), now_ms()
        created_by = principal.user_id  # None for the admin and for anonymous writers
        values = select(literal(table, String), literal(record_id, String), literal(created_by, String),
                        literal(now, Float), literal(now, Float), literal(record, _records.c.data.type))
        # INSERT ... SELECT ... WHERE the table exists: a concurrent drop cannot leave orphans.
        values = values.where(exists(select(data_tables.c.name).where(data_tables.c.name == table)))
        stmt = _records.insert().from_select(
            ["table_name", "id", "created_by", "created_at", "updated_at", "data"], values)
        stored = {"id": record_id, "created_by": created_by, "created_at": iso(now), "updated_at": iso(now), **record}
        listeners = await self._listeners(table, ChangeOp.INSERT)
        fired = _UNREPORTED
        async with self.engine.begin() as conn:
            if (await conn.execute(stmt)).rowcount != 1:
                raise NotFound(f"no table {table!r} (it was dropped)")
            if listeners is not None:
                fired = await self._report(conn, table, listeners, [Change(ChangeOp.INSERT, stored, None)],
                                           principal, origin)
        self._committed(listeners, fired)
        return stored

    async def put(self, table: str, record_id: str, record: dict, principal: Principal, *,
                  create_only: bool = False, origin: Origin | None = None) -> tuple[dict, bool]:
        """Store `record` under an id the caller chose (admin only: the SDK's document API, where
        code names its documents): replace the record's fields if it exists, else create it;
        with `create_only`, an existing id is a 409. Answers the record and whether it was created."""
        require_admin(principal, "store a record under an id of its choosing")
        check_table_name(table)
        if not isinstance(record_id, str) or not RECORD_ID.match(record_id):
            raise BadRequest(f"invalid record id {record_id!r}: 1-32 letters, digits, '_' or '-'")
        async with self.engine.connect() as conn:
            acl = await self._acl(conn, table, missing_ok=True)
        if acl is None:
            await self._create_closed(table)
        record = orjson.loads(check_fields(record, "record", self.settings.max_record_bytes, self.bounds))
        now = now_ms()
        values = select(literal(table, String), literal(record_id, String), literal(None, String),
                        literal(now, Float), literal(now, Float), literal(record, _records.c.data.type))
        values = values.where(exists(select(data_tables.c.name).where(data_tables.c.name == table)))
        dialect = sqlite if self.engine.dialect.name == "sqlite" else postgresql
        stmt = dialect.insert(_records).from_select(
            ["table_name", "id", "created_by", "created_at", "updated_at", "data"], values).on_conflict_do_nothing()
        stored = {"id": record_id, "created_by": None, "created_at": iso(now), "updated_at": iso(now), **record}
        on_insert = await self._listeners(table, ChangeOp.INSERT)
        on_update = await self._listeners(table, ChangeOp.UPDATE)
        fired, listeners = _UNREPORTED, None
        async with self.engine.begin() as conn:
            created = (await conn.execute(stmt)).rowcount == 1
            if created and on_insert is not None:
                listeners = on_insert
                fired = await self._report(conn, table, listeners, [Change(ChangeOp.INSERT, stored, None)],
                                           principal, origin)
            elif not created:
                if create_only:
                    raise Conflict(f"a record with id {record_id!r} already exists in table {table!r}")
                by_id = self._by_id(table, record_id, EVERYTHING)
                if on_update is None:
                    row = (await conn.execute(update(_records).where(by_id).values(data=record, updated_at=now)
                                              .returning(*_records.c))).first()
                else:  # the insert above holds the write lock already
                    updated = await self._update_seeing_old(
                        conn, by_id, lambda c: update(_records).where(c).values(data=record, updated_at=now),
                        locked=True)
                    row = updated[0][0] if updated else None
                    if row is not None:
                        listeners = on_update
                        fired = await self._report(conn, table, listeners,
                                                   [Change(ChangeOp.UPDATE, view(row), updated[0][1])], principal,
                                                   origin)
                if row is None:
                    raise NotFound(f"no table {table!r} (it was dropped)")
                stored = view(row)
        self._committed(listeners, fired)
        return stored, created

    async def find(self, table: str, where: dict | None, principal: Principal, *, order=None,
                   limit: int = DEFAULT_LIMIT, offset: int = 0) -> list[dict]:
        """The records matching `where` (see frazil.data.filters), sorted by `order` (default:
        creation order), at most `limit` (≤ 1000) after skipping `offset`."""
        return (await self.find_page(table, where, principal, order=order, limit=limit, offset=offset))[0]

    async def find_page(self, table: str, where: dict | None, principal: Principal, *, order=None,
                        limit: int = DEFAULT_LIMIT, offset: int = 0,
                        after_id: str | None = None) -> tuple[list[dict], bool]:
        """`find`, answering also whether more records follow the page. `after_id` starts after
        that record id, in the default order only (creation order is id order: a range of the
        primary key, however deep the page)."""
        check_table_name(table)
        limit, offset = _page(limit, offset)
        keys = parse_order(order)
        if after_id is not None and keys:
            raise BadRequest("a position after a record id pages the default order only")
        async with self.engine.connect() as conn:
            scope = authorize((await self._acl(conn, table)).read, principal, Action.READ, table)
            condition = self._where(table, where, scope)
            if after_id is not None:
                condition = and_(condition, _records.c.id > after_id)
            terms = compile_order(keys, self.sql)
            rows = (await conn.execute(select(_records).where(condition).order_by(*terms)
                                       .limit(limit + 1).offset(offset))).all()
        return [view(row) for row in rows[:limit]], len(rows) > limit

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

    async def update(self, table: str, where: dict, patch: dict | None, principal: Principal, *,
                     ops: dict | None = None, origin: Origin | None = None) -> int:
        """Set the patch's fields (a shallow merge) and apply the atomic `ops`
        (frazil.data.updates) on every matching record, in one statement; answers how many."""
        check_table_name(table)
        async with self.engine.connect() as conn:
            scope = authorize((await self._acl(conn, table)).write, principal, Action.WRITE, table)
        condition = self._where(table, _required(where), scope)
        if ops is not None and not patch:
            patch = {}  # only ops: nothing to merge
        else:
            patch = orjson.loads(check_fields(patch, "patch", self.settings.max_record_bytes, self.bounds))
        field_ops = parse_ops(ops, patch, self.bounds)
        if not patch and not field_ops:
            raise BadRequest("the update changes nothing: give a patch or ops")
        listeners = await self._listeners(table, ChangeOp.UPDATE)
        if listeners is not None:
            return len(await self._update_reported(table, condition, lambda c: self._update(c, patch, field_ops),
                                                   listeners, principal, origin))
        async with self.engine.begin() as conn:
            stmt = self._update(condition, patch, field_ops).returning(_records.c.id, self.sql.size().label("size"))
            rows = (await conn.execute(stmt)).all()
            self._check_sizes(rows)
        return len(rows)

    async def update_one(self, table: str, record_id: str, patch: dict, principal: Principal, *,
                         origin: Origin | None = None) -> dict:
        """Patch one record by id; answers the updated record (only its id and times when the
        caller may write but not read it)."""
        check_table_name(table)
        async with self.engine.connect() as conn:
            acl = await self._acl(conn, table)
        scope = authorize(acl.write, principal, Action.WRITE, table)
        patch = orjson.loads(check_fields(patch, "patch", self.settings.max_record_bytes, self.bounds))
        condition = self._by_id(table, record_id, scope)
        listeners = await self._listeners(table, ChangeOp.UPDATE)
        if listeners is not None:
            changes = await self._update_reported(table, condition, lambda c: self._update(c, patch), listeners,
                                                  principal, origin)
            if not changes:
                raise NotFound(f"no record {record_id!r} in table {table!r}")
            return self._redact(changes[0].record, acl, principal)
        async with self.engine.begin() as conn:
            row = (await conn.execute(self._update(condition, patch)
                                      .returning(*_records.c, self.sql.size().label("size")))).first()
            if row is None:
                raise NotFound(f"no record {record_id!r} in table {table!r}")
            self._check_sizes([row])
        return self._redact(view(row), acl, principal)

    async def delete(self, table: str, where: dict, principal: Principal, *, origin: Origin | None = None) -> int:
        """Delete every matching record; answers how many."""
        check_table_name(table)
        async with self.engine.connect() as conn:
            scope = authorize((await self._acl(conn, table)).write, principal, Action.WRITE, table)
        condition = self._where(table, _required(where), scope)
        listeners = await self._listeners(table, ChangeOp.DELETE)
        if listeners is not None:
            return len(await self._delete_reported(table, condition, listeners, principal, origin))
        async with self.engine.begin() as conn:
            return (await conn.execute(delete(_records).where(condition))).rowcount

    async def delete_one(self, table: str, record_id: str, principal: Principal, *,
                         origin: Origin | None = None) -> dict:
        """Delete one record by id; answers it as it was (redacted like `update_one`)."""
        check_table_name(table)
        async with self.engine.connect() as conn:
            acl = await self._acl(conn, table)
        scope = authorize(acl.write, principal, Action.WRITE, table)
        listeners = await self._listeners(table, ChangeOp.DELETE)
        if listeners is not None:
            changes = await self._delete_reported(table, self._by_id(table, record_id, scope), listeners,
                                                  principal, origin)
            if not changes:
                raise NotFound(f"no record {record_id!r} in table {table!r}")
            return self._redact(changes[0].old, acl, principal)
        async with self.engine.begin() as conn:
            row = (await conn.execute(delete(_records).where(self._by_id(table, record_id, scope))
                                      .returning(*_records.c))).first()
        if row is None:
            raise NotFound(f"no record {record_id!r} in table {table!r}")
        return self._redact(view(row), acl, principal)

    # --- writes that fire table triggers (frazil.data.changes) -----------------------------

    async def _listeners(self, table: str, op: ChangeOp):
        return None if self.changes is None else await self.changes.listeners(table, op)

    def _committed(self, listeners, fired) -> None:
        if listeners is not None and fired is not _UNREPORTED:
            self.changes.committed(fired)

    async def _report(self, conn: AsyncConnection, table: str, listeners, changes: list[Change],
                      principal: Principal, origin: Origin | None) -> None:
        """Hand `changes` to the sink inside the write's transaction on `conn`; answers what
        the sink wants back once it committed."""
        if not changes:
            return _UNREPORTED
        if origin is None:
            origin = Origin(user=await self._end_user(conn, principal))
        return await self.changes.record(conn, table, listeners, changes, origin)

    @staticmethod
    async def _end_user(conn: AsyncConnection, principal: Principal) -> dict | None:
        """`{"id", "username"}` of an end user principal (what `context.user` shows), else None."""
        if principal.kind is not PrincipalKind.USER:
            return None
        username = (await conn.execute(select(data_users.c.username)
                                       .where(data_users.c.id == principal.user_id))).scalar_one_or_none()
        return {"id": principal.user_id, "username": username}

    async def _update_reported(self, table: str, condition, change, listeners, principal: Principal,
                               origin: Origin | None) -> list[Change]:
        """`change(condition)` (an UPDATE of data_records) in a transaction that reports it."""
        async with self.engine.begin() as conn:
            updated = await self._update_seeing_old(conn, condition, change)
            self._check_sizes([row for row, _ in updated])
            changes = [Change(ChangeOp.UPDATE, view(row), old) for row, old in updated]
            fired = await self._report(conn, table, listeners, changes, principal, origin)
        self._committed(listeners, fired)
        return changes

    async def _update_seeing_old(self, conn: AsyncConnection, condition, change, *,
                                 locked: bool = False) -> list[tuple[object, dict]]:
        """Run `change(condition)`, an UPDATE of data_records, on the records matching `condition`
        in the transaction on `conn`: its first statement, unless `locked` (the transaction
        wrote already: on SQLite it holds the write lock). Answers (each updated row with its
        `size`, the record as it was)."""
        size = self.sql.size().label("size")
        if conn.dialect.name == "postgresql":
            # One statement: the old rows are read and locked (FOR UPDATE) by the statement that
            # changes them, so no other writer comes between.
            old = (select(_records.c.table_name, _records.c.id, _records.c.data, _records.c.updated_at)
                   .where(condition).with_for_update().subquery("old"))
            stmt = (change(and_(_records.c.table_name == old.c.table_name, _records.c.id == old.c.id))
                    .returning(*_records.c, size, old.c.data.label("old_data"),
                               old.c.updated_at.label("old_updated_at")))
            return [(row, _old_view(row, row.old_data, row.old_updated_at))
                    for row in (await conn.execute(stmt)).all()]
        # SQLite's RETURNING sees only the new row. The write lock taken first (BEGIN
        # IMMEDIATE) keeps every other writer out between the read and the update, and a read
        # transaction never has to become a write one.
        if not locked:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        before = {row.id: row for row in await conn.execute(
            select(_records.c.id, _records.c.data, _records.c.updated_at).where(condition))}
        rows = (await conn.execute(change(condition).returning(*_records.c, size))).all()
        return [(row, _old_view(row, before[row.id].data, before[row.id].updated_at)) for row in rows]

    async def _delete_reported(self, table: str, condition, listeners, principal: Principal,
                               origin: Origin | None) -> list[Change]:
        async with self.engine.begin() as conn:
            rows = (await conn.execute(delete(_records).where(condition).returning(*_records.c))).all()
            changes = [Change(ChangeOp.DELETE, None, view(row)) for row in rows]
            fired = await self._report(conn, table, listeners, changes, principal, origin)
        self._committed(listeners, fired)
        return changes

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
        check_storable_scalar(record_id, "the record id")
        condition = and_(_records.c.table_name == table, _records.c.id == record_id)
        return condition if scope.everything else and_(condition, _in_scope(scope))

    def _update(self, condition, patch: dict, ops: list[FieldOp] = ()):
        data = self.sql.merge(patch) if patch else _records.c.data
        data, applies = compile_ops(list(ops), data, self.sql)
        return update(_records).where(and_(condition, applies)).values(data=data, updated_at=now_ms())

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


def _old_view(row, data, updated_at: float) -> dict:
    """The record an update changed as it was before: `row`'s fixed fields, the old data and time."""
    if isinstance(data, (str, bytes)):  # a driver that hands JSON back undecoded
        data = orjson.loads(data)
    return {"id": row.id, "created_by": row.created_by, "created_at": iso(row.created_at),
            "updated_at": iso(updated_at), **data}


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

