"""DataService on SQLite and PostgreSQL: tables, records, paging, updates, limits."""
import asyncio

import pytest

import frazil.data.service as service
from frazil.data.acl import ADMIN, ANONYMOUS, Principal
from frazil.errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized

ALICE = Principal.user("alice-id")


class TestTables:
    async def test_put_creates_then_replaces_the_acl(self, data):
        """PUT creates (created=True), then changes only the ACL; missing modes are admin."""
        info, created = await data.put_table("notes", {"read": "public"}, ADMIN)
        assert created and info.acl.view() == {"read": "public", "write": "admin"}
        info2, created2 = await data.put_table("notes", {"read": "owner", "write": "owner"}, ADMIN)
        assert not created2 and info2.acl.view() == {"read": "owner", "write": "owner"}
        assert info2.created_at == info.created_at

    async def test_create_table_conflicts(self, data):
        """create_table refuses an existing name with 409."""
        await data.create_table("notes", None, ADMIN)
        with pytest.raises(Conflict):
            await data.create_table("notes", None, ADMIN)

    async def test_get_and_list_count_records(self, data):
        """get_table and list_tables report each table's record count."""
        await data.put_table("empty", None, ADMIN)
        for i in range(3):
            await data.insert("full", {"i": i}, ADMIN)
        assert (await data.get_table("full", ADMIN)).records == 3
        assert [(t.name, t.records) for t in await data.list_tables(ADMIN)] == [("empty", 0), ("full", 3)]
        assert (await data.get_table("full", ADMIN)).view()["records"] == 3

    async def test_drop_removes_records(self, data):
        """Dropping deletes every record; the table is gone (404) and a new one starts empty."""
        for i in range(4):
            await data.insert("gone", {"i": i}, ADMIN)
        await data.insert("kept", {"i": 0}, ADMIN)
        assert await data.drop_table("gone", ADMIN) == 4
        with pytest.raises(NotFound):
            await data.find("gone", None, ADMIN)
        with pytest.raises(NotFound):
            await data.drop_table("gone", ADMIN)
        await data.insert("gone", {"i": 9}, ADMIN)
        assert [r["i"] for r in await data.find("gone", None, ADMIN)] == [9]
        assert len(await data.find("kept", None, ADMIN)) == 1

    @pytest.mark.parametrize("name", ["", "1abc", "a-b", "a" * 64, "ä", "_x", "user info"])
    async def test_bad_table_names(self, data, name):
        """Names follow ^[A-Za-z][A-Za-z0-9_]{0,62}$ everywhere."""
        with pytest.raises(BadRequest, match="invalid table name"):
            await data.put_table(name, None, ADMIN)
        with pytest.raises(BadRequest, match="invalid table name"):
            await data.insert(name, {}, ADMIN)

    @pytest.mark.parametrize("acl", [{"read": "everyone"}, {"reed": "public"}, "public", ["admin"]])
    async def test_bad_acl(self, data, acl):
        """An ACL with an unknown mode or key is a 400."""
        with pytest.raises(BadRequest, match="acl"):
            await data.put_table("t", acl, ADMIN)

    async def test_admin_insert_auto_creates_a_closed_table(self, data):
        """The admin (and so the SDK) may insert into an unknown table: it is made admin/admin."""
        await data.insert("auto", {"x": 1}, ADMIN)
        assert (await data.get_table("auto", ADMIN)).acl.view() == {"read": "admin", "write": "admin"}

    async def test_users_do_not_auto_create(self, data):
        """Anyone else writing to an unknown table gets 404 and creates nothing."""
        for who in (ALICE, ANONYMOUS):
            with pytest.raises(NotFound, match="no table 'nope'"):
                await data.insert("nope", {"x": 1}, who)
        assert await data.list_tables(ADMIN) == []

    @pytest.mark.parametrize("who, error", [(ALICE, Forbidden), (ANONYMOUS, Unauthorized)])
    async def test_table_management_is_admin_only(self, data, who, error):
        """Creating, reading, listing and dropping tables needs the admin principal."""
        await data.put_table("t", None, ADMIN)
        for call in (data.put_table("t", None, who), data.create_table("u", None, who), data.get_table("t", who),
                     data.list_tables(who), data.drop_table("t", who)):
            with pytest.raises(error):
                await call


class TestRecords:
    async def test_insert_answers_the_stored_record(self, data):
        """A record gets id, created_by, created_at and updated_at; get answers the same."""
        record = await data.insert("notes", {"text": "hi", "nested": {"a": [1, 2.5, None]}, "ü": "ö"}, ADMIN)
        assert set(record) == {"id", "created_by", "created_at", "updated_at", "text", "nested", "ü"}
        assert record["created_by"] is None and record["created_at"] == record["updated_at"]
        assert record["created_at"].endswith("Z")
        assert await data.get("notes", record["id"], ADMIN) == record

    async def test_sequential_inserts_keep_their_order(self, data):
        """Records inserted one after another come back in that order, even within one ms."""
        made = [await data.insert("t", {"i": i}, ADMIN) for i in range(50)]
        assert [r["i"] for r in await data.find("t", None, ADMIN)] == list(range(50))
        assert [r["id"] for r in made] == sorted(r["id"] for r in made)

    async def test_ids_are_unique_and_in_creation_order(self, data):
        """Default order is creation order; ids are unique under concurrent inserts."""
        made = await asyncio.gather(*[data.insert("t", {"i": i}, ADMIN) for i in range(40)])
        found = await data.find("t", None, ADMIN, limit=1000)
        assert len({r["id"] for r in made}) == 40
        assert [r["id"] for r in found] == sorted(r["id"] for r in made)

    @pytest.mark.parametrize("record, message", [
        ([1], "must be a JSON object"),
        ("x", "must be a JSON object"),
        ({"id": "mine"}, "set by the platform"),
        ({"created_by": "me"}, "set by the platform"),
        ({"a.b": 1}, "invalid field name"),
        ({"": 1}, "invalid field name"),
        ({"x": {1, 2}}, "not JSON-serializable"),
    ])
    async def test_bad_records(self, data, record, message):
        """Records are JSON objects with free field names except the platform's."""
        with pytest.raises(BadRequest, match=message):
            await data.insert("t", record, ADMIN)

    async def test_record_size_limit(self, service_factory):
        """A record larger than max_record_bytes is 413; an update that would grow one past it
        is 413 and changes nothing."""
        data = await service_factory(max_record_bytes=1000)
        with pytest.raises(PayloadTooLarge):
            await data.insert("t", {"s": "x" * 1000}, ADMIN)
        record = await data.insert("t", {"s": "x" * 600}, ADMIN)
        other = await data.insert("t", {"s": "small"}, ADMIN)
        with pytest.raises(PayloadTooLarge):
            await data.update("t", {}, {"more": "y" * 500}, ADMIN)
        with pytest.raises(PayloadTooLarge):
            await data.update_one("t", record["id"], {"more": "y" * 500}, ADMIN)
        assert await data.get("t", record["id"], ADMIN) == record
        assert await data.get("t", other["id"], ADMIN) == other

    async def test_paging(self, data):
        """limit and offset page through the sorted records; bounds are checked."""
        for i in range(25):
            await data.insert("t", {"i": i}, ADMIN)
        page = await data.find("t", None, ADMIN, order="-i", limit=10, offset=10)
        assert [r["i"] for r in page] == list(range(14, 4, -1))
        assert len(await data.find("t", None, ADMIN)) == 25
        assert await data.count("t", {"i": {"lt": 5}}, ADMIN) == 5
        for limit, offset in [(0, 0), (1001, 0), (10, -1), ("10", 0), (True, 0)]:
            with pytest.raises(BadRequest):
                await data.find("t", None, ADMIN, limit=limit, offset=offset)
        assert len(await data.find("t", None, ADMIN, limit=1000)) == 25

    async def test_sort_on_several_keys_and_platform_fields(self, data):
        """order takes several keys; platform fields sort as columns."""
        made = [await data.insert("t", {"g": i % 3, "i": i}, ADMIN) for i in range(9)]
        found = await data.find("t", None, ADMIN, order="g,-i")
        assert [(r["g"], r["i"]) for r in found] == sorted(((i % 3, i) for i in range(9)),
                                                          key=lambda p: (p[0], -p[1]))
        newest_first = await data.find("t", None, ADMIN, order="-created_at")
        # Ties (same millisecond) are broken by id, ascending.
        expected = sorted(made, key=lambda r: r["id"])
        expected = sorted(expected, key=lambda r: r["created_at"], reverse=True)
        assert [r["id"] for r in newest_first] == [r["id"] for r in expected]
        assert [r["id"] for r in await data.find("t", None, ADMIN, order="-id")] == \
            sorted((r["id"] for r in made), reverse=True)

    async def test_bulk_update_merges_and_counts(self, data):
        """update sets the patch's fields on every match, keeps the others, answers the count."""
        for text in ("a", "b", "c"):
            await data.insert("t", {"text": text, "keep": 1}, ADMIN)
        await data.insert("t", {"text": "d", "seen": True}, ADMIN)
        assert await data.update("t", {"seen": {"ne": True}}, {"seen": True, "meta": {"k": [1]}}, ADMIN) == 3
        rows = await data.find("t", None, ADMIN, order="text")
        assert all(r["seen"] is True for r in rows)
        assert [r.get("meta") for r in rows] == [{"k": [1]}] * 3 + [None]
        assert [r.get("keep") for r in rows] == [1, 1, 1, None]
        assert all(r["updated_at"] >= r["created_at"] for r in rows)
        assert await data.update("t", {"text": "zzz"}, {"x": 1}, ADMIN) == 0

    async def test_update_with_many_fields(self, data):
        """A patch with hundreds of fields works (SQLite's json_set argument limit)."""
        record = await data.insert("t", {"a": 0}, ADMIN)
        patch = {f"f{i}": i for i in range(300)}
        updated = await data.update_one("t", record["id"], patch, ADMIN)
        assert updated["f299"] == 299 and updated["a"] == 0

    async def test_update_one_answers_the_record(self, data, monkeypatch):
        """update_one answers the merged record with a new updated_at; null is stored as null."""
        # The service's clock, stepped by the test (not slept on: a wall clock may step back).
        clock = [1_700_000_000.0]
        monkeypatch.setattr(service, "now_ms", lambda: clock[0])
        record = await data.insert("t", {"a": 1, "b": 2}, ADMIN)
        clock[0] += 0.001
        updated = await data.update_one("t", record["id"], {"b": None, "c": "x"}, ADMIN)
        assert (updated["a"], updated["b"], updated["c"]) == (1, None, "x")
        assert updated["created_at"] == record["created_at"] and updated["updated_at"] > record["updated_at"]
        assert await data.get("t", record["id"], ADMIN) == updated

    @pytest.mark.parametrize("patch, error", [({}, BadRequest), ({"id": "x"}, BadRequest), ([1], BadRequest)])
    async def test_bad_patches(self, data, patch, error):
        """An empty patch, a platform field or a non-object is a 400."""
        record = await data.insert("t", {"a": 1}, ADMIN)
        with pytest.raises(error):
            await data.update_one("t", record["id"], patch, ADMIN)

    async def test_bulk_delete(self, data):
        """delete removes every match and answers how many; {} matches all; None is refused."""
        for i in range(6):
            await data.insert("t", {"i": i}, ADMIN)
        assert await data.delete("t", {"i": {"gte": 4}}, ADMIN) == 2
        with pytest.raises(BadRequest, match="needs a where"):
            await data.delete("t", None, ADMIN)
        assert await data.delete("t", {}, ADMIN) == 4

    async def test_delete_one(self, data):
        """delete_one answers the deleted record; then it is 404."""
        record = await data.insert("t", {"a": 1}, ADMIN)
        assert await data.delete_one("t", record["id"], ADMIN) == record
        for call in (data.get("t", record["id"], ADMIN), data.delete_one("t", record["id"], ADMIN),
                     data.update_one("t", record["id"], {"a": 2}, ADMIN)):
            with pytest.raises(NotFound, match="no record"):
                await call

    async def test_records_are_per_table(self, data):
        """The same filter never reaches another table's records."""
        a = await data.insert("a", {"x": 1}, ADMIN)
        await data.insert("b", {"x": 1}, ADMIN)
        assert [r["id"] for r in await data.find("a", {"x": 1}, ADMIN)] == [a["id"]]
        with pytest.raises(NotFound):
            await data.get("b", a["id"], ADMIN)
        assert await data.delete("b", {}, ADMIN) == 1
        assert len(await data.find("a", None, ADMIN)) == 1


class TestRecordIds:
    def test_monotonic_within_a_millisecond_and_across_a_clock_step_back(self, monkeypatch):
        """Ids strictly increase, even when the clock stands still or steps back."""
        import frazil.store.ids as store_ids

        ids = store_ids.TimeOrderedIds()
        now = [1_700_000_000.0]
        monkeypatch.setattr(store_ids.time, "time", lambda: now[0])
        made = [ids() for _ in range(70_000)]  # more than one millisecond's sequence space
        now[0] -= 5
        made.append(ids())
        assert made == sorted(made) and len(set(made)) == len(made)
        assert all(len(i) == 28 for i in made)
