"""Table triggers in process (the real app, store and scheduler over a fake sandbox, SQLite):
which changes fire which functions, with what event, and what a bad trigger gets at deploy.
Real servers, PostgreSQL, the SDK in real runtimes and kill -9 are in tests/e2e/test_table_events.py."""
from __future__ import annotations

import pytest

from tests.inproc.harness import CODE, zip_files

ORDERS = {"type": "table", "table": "orders", "on": ["insert", "update", "delete"]}


async def table_records(frazil, name: str) -> list[dict]:
    response = await frazil.fast.get("/v1/invocations", params={"function": name, "limit": 500})
    assert response.status_code == 200, response.text
    records = [r for r in response.json()["invocations"] if r["trigger"] == "table"]
    return [await frazil.record(r["id"]) for r in reversed(records)]  # oldest first, with events


class TestFiring:
    async def test_insert_update_delete_each_fire_one_invocation_with_the_change(self, frazil):
        """Over the admin API: one queued `table` record per change, event {table, op, record, old}."""
        await frazil.deploy("watcher", triggers=[ORDERS])
        await frazil.deploy("bystander")
        inserted = (await frazil.fast.post("/v1/tables/orders/records", json={"n": 1})).json()["record"]
        patched = await frazil.fast.patch(f"/v1/tables/orders/records/{inserted['id']}", json={"n": 2})
        assert patched.status_code == 200, patched.text
        assert (await frazil.fast.delete(f"/v1/tables/orders/records/{inserted['id']}")).status_code == 200
        records = await table_records(frazil, "watcher")
        assert [r["event"]["op"] for r in records] == ["insert", "update", "delete"]
        assert {(r["status"], r["mode"], r["depth"], r["user"]) for r in records} == {("queued", "async", 0, None)}
        insert, update, delete = (r["event"] for r in records)
        assert insert == {"table": "orders", "op": "insert", "record": inserted, "old": None}
        assert update["old"] == inserted and update["record"] == patched.json()["record"]
        assert update["record"]["n"] == 2 and update["record"]["updated_at"] >= inserted["updated_at"]
        assert delete == {"table": "orders", "op": "delete", "record": None, "old": patched.json()["record"]}
        stats = await frazil.dispatcher.drain()
        assert stats.finished == {"succeeded": 3}
        assert [r["result"] for r in await table_records(frazil, "watcher")] == [insert, update, delete]
        assert await table_records(frazil, "bystander") == []

    async def test_only_the_named_operations_and_table_fire(self, frazil):
        await frazil.deploy("on-delete", triggers=[{"type": "table", "table": "orders", "on": ["delete"]}])
        await frazil.deploy("other-table", triggers=[{"type": "table", "table": "invoices"}])
        for n in range(3):
            await frazil.fast.post("/v1/tables/orders/records", json={"n": n})
        assert (await frazil.fast.patch("/v1/tables/orders/records/none", json={"n": 1})).status_code == 404
        assert await table_records(frazil, "on-delete") == []
        gone = await frazil.fast.delete("/v1/tables/orders/records/none")
        assert gone.status_code == 404
        assert await table_records(frazil, "on-delete") == [] and await table_records(frazil, "other-table") == []

    async def test_bulk_writes_from_a_function_fire_one_per_record_one_call_deeper(self, frazil):
        """A function's SDK update of two records fires two invocations, each with its own old
        and new record, at depth 1; the count the function gets is unchanged."""
        await frazil.deploy("watcher", triggers=[{"type": "table", "table": "orders", "on": ["update"]}])
        await frazil.deploy("writer")
        for n in range(2):
            await frazil.fast.post("/v1/tables/orders/records", json={"n": n})
        body = await frazil.invoke("writer", {"sdk": [{"op": "db.update", "table": "orders", "where": {},
                                                        "patch": {"seen": True}}]})
        assert [(r["ok"], r["value"]) for r in body["result"]] == [(True, 2)]
        records = await table_records(frazil, "watcher")
        assert [r["depth"] for r in records] == [1, 1]
        assert sorted(r["event"]["old"]["n"] for r in records) == [0, 1]
        assert all(r["event"]["record"]["seen"] is True and "seen" not in r["event"]["old"] for r in records)

    async def test_a_redeploy_without_the_trigger_stops_it(self, frazil):
        await frazil.deploy("watcher", triggers=[ORDERS])
        await frazil.fast.post("/v1/tables/orders/records", json={"n": 1})
        await frazil.deploy("watcher")
        await frazil.fast.post("/v1/tables/orders/records", json={"n": 2})
        assert [r["event"]["record"]["n"] for r in await table_records(frazil, "watcher")] == [1]


@pytest.mark.parametrize("trigger, words", [
    ({"type": "table", "table": "orders-x"}, "triggers.0.table"),
    ({"type": "table", "table": "1orders"}, "triggers.0.table"),
    ({"type": "table", "table": "x" * 64}, "triggers.0.table"),
    ({"type": "table"}, "triggers.0.table"),
    ({"type": "table", "table": "orders", "on": ["upsert"]}, "triggers.0.on.0"),
    ({"type": "table", "table": "orders", "on": []}, "triggers.0.on"),
    ({"type": "table", "table": "orders", "on": ["insert", "insert"]}, "triggers.0.on"),
    ({"type": "table", "table": "orders", "on": "insert"}, "triggers.0.on"),
    ({"type": "table", "table": "orders", "cron": "* * * * *"}, "triggers.0.cron"),
])
async def test_bad_table_triggers_are_refused_and_nothing_is_deployed(frazil, trigger, words):
    response = await frazil.fast.put("/v1/functions/bad", files={"bundle": ("b.zip", zip_files(CODE))},
                                     data={"config": __import__("json").dumps({"triggers": [trigger]})})
    assert response.status_code == 400, response.text
    assert words in response.json()["message"], response.json()
    assert (await frazil.fast.get("/v1/functions/bad")).status_code == 404
