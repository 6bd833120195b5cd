"""Schedule triggers through real servers: bad triggers are refused at deploy; a one-second
schedule fires one `schedule` record per tick, also with two servers on one PostgreSQL
database; after a restart the ticks missed while down are not fired."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from frazil.settings import Settings
from frazil.store.schema import schedule_ticks
from frazil.testing.waiting import wait_until
from tests.postgres import create_database, database_url, drop_database

ECHO = {"index.py": "def main(event, context):\n    return event\n"}
EVERY_SECOND = {"type": "schedule", "cron": "* * * * * *", "event": {"job": "tick"}}
ADMIN_KEY = "schedules-test-admin-key"


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def claims(url: str) -> list[tuple[float, str, str | None]]:
    """(tick_at, node, invocation) of every claimed tick, in tick order, read from the database."""
    async def read():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(select(schedule_ticks.c.tick_at, schedule_ticks.c.node,
                                                 schedule_ticks.c.invocation).order_by(schedule_ticks.c.tick_at))
                return [tuple(row) for row in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def schedule_records(srv, name: str) -> list[dict]:
    response = srv.client().get("/v1/invocations", params={"function": name, "limit": 500})
    assert response.status_code == 200, response.text
    return [r for r in response.json()["invocations"] if r["trigger"] == "schedule"]


def one_per_second(ticks: list[float]) -> bool:
    return all(b - a == 1.0 for a, b in zip(ticks, ticks[1:]))


@pytest.fixture
def postgres_url():
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    name = asyncio.run(create_database("frazil_sched"))
    yield database_url(name)
    asyncio.run(drop_database(name))


@pytest.mark.parametrize("triggers, words", [
    ([{"type": "schedule", "cron": "61 * * * *"}], "triggers.0.cron"),
    ([{"type": "schedule", "cron": "* * *"}], "triggers.0.cron"),
    ([{"type": "schedule", "cron": "* * * * * * *"}], "triggers.0.cron"),
    ([EVERY_SECOND, {"type": "schedule", "cron": "0 0 31 2 *x"}], "triggers.1.cron"),
    ([{"type": "schedule"}], "triggers.0.cron"),
    ([{"type": "webhook", "cron": "* * * * *"}], "triggers.0.type"),
    ([{"cron": "* * * * *"}], "triggers.0.type"),
    ({"type": "schedule", "cron": "* * * * *"}, "triggers"),
])
def test_bad_triggers_are_refused_and_nothing_is_deployed(server, unique_name, triggers, words):
    """400 naming the field; the function does not exist afterwards."""
    response = server.deploy(unique_name, ECHO, expect=400, triggers=triggers)
    body = response.json()
    assert body["success"] is False and words in body["message"], body
    assert server.client().get(f"/v1/functions/{unique_name}").status_code == 404


def test_one_record_per_tick_and_no_burst_after_a_restart(server_factory, tmp_path):
    """A one-second schedule fires one `schedule` record per tick with the configured event;
    GET shows its next fire time. Stopped for 3 s and started again, it does not fire the
    ticks it missed: the next one after the restart is its first."""
    srv = server_factory(tmp_path / "data")
    response = srv.deploy("ticker", ECHO, triggers=[EVERY_SECOND])
    shown = response.json()["function"]["triggers"]
    assert shown[0]["cron"] == "* * * * * *" and shown[0]["event"] == {"job": "tick"}
    function = srv.client().get("/v1/functions/ticker").json()["function"]
    (trigger,) = function["triggers"]
    assert 0 < ts(trigger["next_fire_at"]) - time.time() <= 1.0
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'frazil.db'}"

    wait_until(lambda: len(schedule_records(srv, "ticker")) >= 4, timeout=20, what="four scheduled records")
    records = schedule_records(srv, "ticker")
    record = srv.wait_invocation(records[-1]["id"])
    assert (record["trigger"], record["mode"], record["event"], record["status"]) == (
        "schedule", "async", {"job": "tick"}, "succeeded")

    srv.stop()
    stopped_at = time.time()
    before = claims(url)
    # The downtime under test (not a wait for anything): ticks pass while no server runs.
    time.sleep(3)
    srv.start()
    started_at = time.time()
    wait_until(lambda: len(claims(url)) >= len(before) + 3, timeout=20, what="three ticks after the restart")
    after = claims(url)[len(before):]
    ticks_before, ticks_after = [c[0] for c in before], [c[0] for c in after]
    assert one_per_second(ticks_before) and one_per_second(ticks_after), (ticks_before, ticks_after)
    assert ticks_before[-1] < stopped_at and ticks_after[0] >= started_at - 1.0  # nothing of the downtime
    assert ticks_after[0] - ticks_before[-1] >= 3.0
    # One record per claimed tick, each a `schedule` record (a tick is claimed first, then
    # named with its record: the newest may be between the two).
    wait_until(lambda: None not in [c[2] for c in claims(url)], timeout=20, what="every claimed tick named")
    ids = [c[2] for c in claims(url)]
    assert None not in ids and len(set(ids)) == len(ids)
    records = schedule_records(srv, "ticker")
    assert {r["id"] for r in records} >= set(ids)
    assert len(records) <= len(claims(url))  # no record without its own claim


def test_two_servers_on_one_database_fire_each_tick_once(server_factory, tmp_path, postgres_url):
    """Two `all` nodes sharing one PostgreSQL database both run schedules: each tick has one
    claim and one record between them, and no tick is missed while they run."""
    env = {Settings.env_name("database_url"): postgres_url, Settings.env_name("admin_key"): ADMIN_KEY}
    a = server_factory(tmp_path / "a", **env)
    b = server_factory(tmp_path / "b", **env)
    # The same bundle deployed on each: each node's data dir then holds the code (embedded nodes
    # do not share blobs), and the active version is the second, the same code.
    a.deploy("ticker", ECHO, triggers=[EVERY_SECOND])
    b.deploy("ticker", ECHO, triggers=[EVERY_SECOND])
    start = time.time()

    def named_ticks():  # claimed ticks past the deploys whose record is queued (named on the claim)
        ticks = [c for c in claims(postgres_url) if c[0] > start + 1]
        done = [c for c in ticks if c[2] is not None]
        return done if len(done) >= 8 and len(done) == len(ticks) else None

    ticks = wait_until(named_ticks, timeout=30, what="eight ticks claimed and queued")
    assert one_per_second([c[0] for c in ticks]), ticks
    ids = [c[2] for c in ticks]
    assert len(set(ids)) == len(ids)
    records = {r["id"]: r for r in schedule_records(a, "ticker")}
    assert set(ids) <= set(records)
    # No record without its own claim: a record is queued only after its tick's claim went in,
    # so the claims read after the records are at least as many.
    assert len(records) <= len(claims(postgres_url))


YEARLY = {"type": "schedule", "cron": "0 0 1 1 *", "event": {"new": "year"}}


def test_settings_changes_and_rollbacks_keep_each_versions_triggers(server, unique_name):
    """PATCH makes a version with the active one's triggers; a rollback serves the older
    version's own triggers (none here)."""
    server.deploy(unique_name, ECHO)
    server.deploy(unique_name, ECHO, triggers=[YEARLY])
    patched = server.client().patch(f"/v1/functions/{unique_name}", json={"memory": 256}).json()["function"]
    assert patched["version"] == 3 and [t["cron"] for t in patched["triggers"]] == ["0 0 1 1 *"]
    shown = server.client().get(f"/v1/functions/{unique_name}").json()["function"]["triggers"]
    assert shown[0]["event"] == {"new": "year"}
    assert datetime.fromisoformat(shown[0]["next_fire_at"].replace("Z", "+00:00")).strftime("%m-%d %H:%M:%S") \
        == "01-01 00:00:00"
    back = server.client().post(f"/v1/functions/{unique_name}/rollback", json={"version": 1}).json()["function"]
    assert back["triggers"] == []
    again = server.client().post(f"/v1/functions/{unique_name}/rollback", json={"version": 3}).json()["function"]
    assert [t["cron"] for t in again["triggers"]] == ["0 0 1 1 *"]


def test_triggers_tables_in_frazil_toml(server, tmp_path, unique_name):
    """`[[triggers]]` tables in frazil.toml deploy as the config's `triggers` list."""
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "index.py").write_text(ECHO["index.py"])
    (folder / "frazil.toml").write_text(f'name = "{unique_name}"\n\n[[triggers]]\ntype = "schedule"\n'
                                        'cron = "0 0 1 1 *"\nevent = { new = "year" }\n')
    result = server.cli("deploy", str(folder))
    assert result.returncode == 0, result.stderr
    function = server.client().get(f"/v1/functions/{unique_name}").json()["function"]
    assert [(t["type"], t["cron"], t["event"]) for t in function["triggers"]] == [
        ("schedule", "0 0 1 1 *", {"new": "year"})]
