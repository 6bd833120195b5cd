"""Atomic field operations of bulk updates (frazil.data.updates), records stored under a chosen
id (`DataService.put`), the `nin`/`exists` operators and camelCase table names, on SQLite and
PostgreSQL."""
import asyncio

import pytest

from frazil.data.acl import ADMIN, Principal
from frazil.errors import BadRequest, Conflict, Forbidden

ALICE = Principal.user("alice-id")


class TestAtomicOps:
    async def test_inc_push_remove_in_one_statement(self, data):
        """inc adds (missing counts as 0), push appends (missing becomes the array), remove deletes."""
        a = await data.insert("userInfo", {"n": 1, "tags": ["x"], "old": 1, "name": "a"}, ADMIN)
        b = await data.insert("userInfo", {"name": "b"}, ADMIN)
        changed = await data.update("userInfo", {}, {"seen": True},
                                    ADMIN, ops={"n": {"inc": 2.5}, "tags": {"push": ["y", {"z": 1}]},
                                                "old": {"remove": True}})
        assert changed == 2
        ra, rb = await data.get("userInfo", a["id"], ADMIN), await data.get("userInfo", b["id"], ADMIN)
        assert (ra["n"], ra["tags"], "old" in ra, ra["seen"]) == (3.5, ["x", "y", {"z": 1}], False, True)
        assert (rb["n"], rb["tags"], "old" in rb) == (2.5, ["y", {"z": 1}], False)

    async def test_inc_keeps_integers_and_is_atomic(self, data):
        """Concurrent increments all land (the database adds; nobody reads then writes)."""
        rec = await data.insert("counters", {"n": 0}, ADMIN)
        await asyncio.gather(*[data.update("counters", {"id": rec["id"]}, None, ADMIN, ops={"n": {"inc": 1}})
                               for _ in range(20)])
        got = await data.get("counters", rec["id"], ADMIN)
        assert got["n"] == 20 and isinstance(got["n"], int)

    async def test_a_field_of_another_kind_is_not_updated(self, data):
        """inc on a string and push on a number leave those records alone, uncounted."""
        await data.insert("t", {"n": "text", "a": 1}, ADMIN)
        await data.insert("t", {"n": 1, "a": [1]}, ADMIN)
        assert await data.update("t", {}, None, ADMIN, ops={"n": {"inc": 1}}) == 1
        assert await data.update("t", {}, None, ADMIN, ops={"a": {"push": [2]}}) == 1
        assert sorted(str(r["n"]) for r in await data.find("t", None, ADMIN)) == ["2", "text"]

    async def test_inc_never_leaves_the_storable_range(self, data):
        """A sum at or beyond 2**63 does not update the record."""
        await data.insert("t", {"n": 2**62}, ADMIN)
        assert await data.update("t", {}, None, ADMIN, ops={"n": {"inc": 2**62}}) == 0
        assert (await data.find("t", None, ADMIN))[0]["n"] == 2**62

    @pytest.mark.parametrize("ops, message", [
        ({"n": {"inc": "1"}}, "'inc' takes a number"),
        ({"n": {"inc": True}}, "'inc' takes a number"),
        ({"n": {"inc": 1, "push": [1]}}, "exactly one operation"),
        ({"n": {"mul": 2}}, "unknown operation"),
        ({"a": {"push": []}}, "non-empty array"),
        ({"a": {"push": ["a\x00"]}}, "U\\+0000"),
        ({"x": {"remove": 1}}, "'remove' takes true"),
        ({"id": {"remove": True}}, "set by the platform"),
        ({"seen": {"remove": True}}, "also in the patch"),
        ({"a.b": {"inc": 1}}, "invalid field name"),
        ("inc", "ops must be a JSON object"),
    ])
    async def test_bad_ops(self, data, ops, message):
        """Hostile or malformed ops are refused with 400 before anything changes."""
        await data.insert("t", {"n": 1}, ADMIN)
        with pytest.raises(BadRequest, match=message):
            await data.update("t", {}, {"seen": True}, ADMIN, ops=ops)
        assert (await data.find("t", None, ADMIN))[0]["n"] == 1

    async def test_ops_respect_the_acl(self, data):
        """An end user's bulk update with ops is judged like any write."""
        await data.put_table("t", {"read": "public", "write": "admin"}, ADMIN)
        with pytest.raises(Forbidden):
            await data.update("t", {}, None, ALICE, ops={"n": {"inc": 1}})


class TestPut:
    async def test_put_creates_then_replaces(self, data):
        """A chosen id: created once, then its fields replaced (not merged)."""
        rec, created = await data.put("users", "openid-1", {"a": 1, "b": 2}, ADMIN)
        assert created and rec["id"] == "openid-1" and rec["a"] == 1
        rec, created = await data.put("users", "openid-1", {"c": 3}, ADMIN)
        assert not created
        got = await data.get("users", "openid-1", ADMIN)
        assert ("a" in got, got["c"]) == (False, 3)
        with pytest.raises(Conflict):
            await data.put("users", "openid-1", {}, ADMIN, create_only=True)

    @pytest.mark.parametrize("record_id", ["", "a/b", "x" * 33, "a b", 5])
    async def test_bad_ids(self, data, record_id):
        with pytest.raises(BadRequest, match="invalid record id"):
            await data.put("users", record_id, {}, ADMIN)

    async def test_admin_only(self, data):
        with pytest.raises(Forbidden):
            await data.put("users", "x", {}, ALICE)


class TestNinExists:
    async def test_nin_and_exists(self, data):
        for record in ({"k": 1}, {"k": 2}, {"k": None}, {}):
            await data.insert("t", record, ADMIN)
        ks = lambda rows: sorted(repr(r.get("k", "missing")) for r in rows)  # noqa: E731
        assert ks(await data.find("t", {"k": {"nin": [1]}}, ADMIN)) == ["'missing'", "2", "None"]
        assert ks(await data.find("t", {"k": {"exists": True}}, ADMIN)) == ["1", "2", "None"]
        assert ks(await data.find("t", {"k": {"exists": False}}, ADMIN)) == ["'missing'"]
        assert len(await data.find("t", {"created_by": {"nin": ["someone"]}}, ADMIN)) == 4
        assert len(await data.find("t", {"id": {"nin": []}}, ADMIN)) == 4

    @pytest.mark.parametrize("where", [{"k": {"exists": 1}}, {"id": {"exists": True}}, {"k": {"nin": 1}}])
    async def test_bad(self, data, where):
        await data.put_table("t", None, ADMIN)
        with pytest.raises(BadRequest):
            await data.find("t", where, ADMIN)
