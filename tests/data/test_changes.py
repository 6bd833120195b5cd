"""Every change of a record reaches the change sink inside its own transaction, with the record
before and after (frazil.data.changes), on SQLite and PostgreSQL. The sink here writes a row of
its own on the write's connection, as the table triggers' sink does (its invocations): that row
and the change commit together or not at all."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Column, MetaData, String, Table, delete, select

from frazil.data.acl import ADMIN, Acl, AclMode, Principal
from frazil.data.changes import ChangeOp, Origin
from frazil.errors import PayloadTooLarge

# A table of the test's own, beside the platform's: where the sink writes what it was told.
_meta = MetaData()
seen = Table("test_seen_changes", _meta, Column("op", String(8)), Column("record", String(64)),
             Column("old", String(64)), Column("user", String(64)))


class WritingSink:
    """Listens to the ops in `ops` on table `orders`; writes one row per change on the write's
    connection; `fail` makes it raise there instead (the write must then not stand)."""

    def __init__(self, ops=tuple(ChangeOp)):
        self.ops = set(ops)
        self.changes = []
        self.origins = []
        self.commits = 0
        self.recorded = []
        self.fail = False

    async def listeners(self, table, op):
        return "orders-listeners" if table == "orders" and op in self.ops else None

    async def record(self, conn, table, listeners, changes, origin):
        assert listeners == "orders-listeners"
        for change in changes:
            await conn.execute(seen.insert().values(
                op=change.op.value, record=None if change.record is None else str(change.record.get("n")),
                old=None if change.old is None else str(change.old.get("n")),
                user=origin.user["username"] if origin.user else None))
        if self.fail:
            raise RuntimeError("the sink failed")
        self.changes += changes
        self.origins.append(origin)
        token = object()
        self.recorded.append(token)
        return token

    def committed(self, fired):
        assert fired in self.recorded  # what this write's record() answered
        self.commits += 1


@pytest.fixture
async def watched_factory(service_factory):
    """`await watched_factory(**settings)`: a DataService whose sink is a `WritingSink`."""
    made = []

    async def make(**overrides):
        service = await service_factory(**overrides)
        async with service.engine.begin() as conn:
            await conn.run_sync(_meta.create_all)
            await conn.execute(delete(seen))
        service.changes = WritingSink()
        made.append(service)
        return service

    yield make
    for service in made:
        async with service.engine.begin() as conn:
            await conn.run_sync(_meta.drop_all)


@pytest.fixture
async def data(watched_factory):
    return await watched_factory()


async def seen_rows(data) -> list[tuple]:
    async with data.engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(select(seen))]


class TestChanges:
    async def test_each_change_carries_the_record_before_and_after(self, data):
        first = await data.insert("orders", {"n": 1, "tag": "a"}, ADMIN)
        await data.insert("orders", {"n": 2, "tag": "a"}, ADMIN)
        assert await data.update("orders", {"tag": "a"}, {"n": 10}, ADMIN) == 2
        patched = await data.update_one("orders", first["id"], {"x": True}, ADMIN)
        deleted = await data.delete_one("orders", first["id"], ADMIN)
        assert await data.delete("orders", {}, ADMIN) == 1
        ops = [c.op for c in data.changes.changes]
        assert ops == [ChangeOp.INSERT] * 2 + [ChangeOp.UPDATE] * 3 + [ChangeOp.DELETE] * 2
        inserted, _, bulk_a, bulk_b, one, gone, rest = data.changes.changes
        assert inserted.record == first and inserted.old is None
        assert sorted((c.old["n"], c.record["n"]) for c in (bulk_a, bulk_b)) == [(1, 10), (2, 10)]
        assert one.record == patched and one.old["n"] == 10 and "x" not in one.old
        assert one.old["updated_at"] <= one.record["updated_at"] and one.old["created_at"] == first["created_at"]
        assert gone.record is None and gone.old == deleted == patched
        assert rest.old["n"] == 10 and rest.record is None
        assert data.changes.commits == 6  # one per write
        assert len(await seen_rows(data)) == 7

    async def test_a_put_reports_an_insert_or_an_update_with_the_old_record(self, data):
        """The document API's put: a new id is an insert, an existing one an update (its old
        record reported), each in the put's own transaction."""
        created, was_new = await data.put("orders", "doc-1", {"n": 1}, ADMIN)
        replaced, again_new = await data.put("orders", "doc-1", {"n": 2, "x": True}, ADMIN)
        assert (was_new, again_new) == (True, False)
        insert, update = data.changes.changes
        assert (insert.op, insert.record, insert.old) == (ChangeOp.INSERT, created, None)
        assert (update.op, update.record, update.old["n"]) == (ChangeOp.UPDATE, replaced, 1)
        assert "x" not in update.old and data.changes.commits == 2

    async def test_a_sink_that_fails_undoes_the_write(self, data):
        """The sink's failure rolls the change back with its own row: nothing half-applied."""
        kept = await data.insert("orders", {"n": 1}, ADMIN)
        data.changes.fail = True
        with pytest.raises(RuntimeError):
            await data.insert("orders", {"n": 2}, ADMIN)
        with pytest.raises(RuntimeError):
            await data.update("orders", {}, {"n": 3}, ADMIN)
        with pytest.raises(RuntimeError):
            await data.delete_one("orders", kept["id"], ADMIN)
        assert [r["n"] for r in await data.find("orders", {}, ADMIN)] == [1]
        assert await seen_rows(data) == [("insert", "1", None, None)]
        assert data.changes.commits == 1

    async def test_an_update_over_the_size_limit_reports_nothing(self, watched_factory):
        data = await watched_factory(max_record_bytes=200)
        record = await data.insert("orders", {"n": 1}, ADMIN)
        with pytest.raises(PayloadTooLarge):
            await data.update_one("orders", record["id"], {f"f{i}": "x" * 20 for i in range(8)}, ADMIN)
        assert [c.op for c in data.changes.changes] == [ChangeOp.INSERT]

    async def test_unwatched_operations_and_tables_take_the_plain_path(self, data):
        data.changes.ops = {ChangeOp.DELETE}
        record = await data.insert("orders", {"n": 1}, ADMIN)
        await data.update_one("orders", record["id"], {"n": 2}, ADMIN)
        await data.insert("invoices", {"n": 1}, ADMIN)
        await data.delete("invoices", {}, ADMIN)
        assert data.changes.changes == [] and data.changes.commits == 0
        await data.delete("orders", {}, ADMIN)
        assert [(c.op, c.old["n"]) for c in data.changes.changes] == [(ChangeOp.DELETE, 2)]

    async def test_the_origin_is_the_end_user_unless_given(self, data):
        await data.put_table("orders", Acl(AclMode.AUTHENTICATED, AclMode.AUTHENTICATED), ADMIN)
        session = await data.accounts.register("alice", "correct horse")
        await data.insert("orders", {"n": 1}, Principal.user(session.user_id))
        await data.insert("orders", {"n": 2}, ADMIN)
        await data.insert("orders", {"n": 3}, ADMIN, origin=Origin(user={"id": "u", "username": "bob"}, depth=3))
        assert data.changes.origins == [Origin(user={"id": session.user_id, "username": "alice"}),
                                        Origin(), Origin(user={"id": "u", "username": "bob"}, depth=3)]

    async def test_concurrent_updates_each_see_the_other_s_result_as_old(self, data):
        """Updates of one record that race each report the value the one before them left:
        every old value is some update's new value (or the first), each exactly once."""
        record = await data.insert("orders", {"n": 0}, ADMIN)
        await asyncio.gather(*(data.update_one("orders", record["id"], {"n": n}, ADMIN) for n in range(1, 9)))
        updates = [c for c in data.changes.changes if c.op is ChangeOp.UPDATE]
        olds = sorted(c.old["n"] for c in updates)
        news = sorted(c.record["n"] for c in updates)
        final = (await data.get("orders", record["id"], ADMIN))["n"]
        assert news == list(range(1, 9))
        assert olds == sorted([0] + [n for n in news if n != final])
