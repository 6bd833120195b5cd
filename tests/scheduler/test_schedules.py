"""Schedule triggers (frazil.scheduler.schedules) on both backends: two loops - two nodes - on
one database, each with its own clock that the test moves, fire each tick exactly once between
them; a loop that starts after a downtime does not replay the ticks it missed."""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
from sqlalchemy import select

from frazil.scheduler.entry import Entry
from frazil.scheduler.schedules import TICK_GRACE_S, Schedules, next_fire
from frazil.settings import Settings
from frazil.store.db import open_engine
from frazil.store.functions import FunctionStore
from frazil.store.invocations import InvocationStore
from frazil.store.models import Access, Trigger
from frazil.store.schema import schedule_ticks
from tests.store.conftest import backend, database_url_factory  # noqa: F401 - fixtures

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()  # a whole minute


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


class QueueOnly:
    """The async queue's side of Entry: the records are stored and stay queued, to be counted."""

    def __init__(self, invocations: InvocationStore):
        self.store = invocations

    async def enqueue(self, record) -> None:
        await self.store.insert(record)

    def committed(self, records) -> None:
        pass


async def deploy(functions: FunctionStore, name: str, triggers: list[dict]) -> None:
    number = await functions.begin_version(name, runtime="python3.11", handler="index.main", memory_mb=128,
                                           timeout_s=5, env={}, resident=0, access=Access.ADMIN, http=False,
                                           bundle_hash="0" * 64, bundle_bytes=1, triggers=triggers)
    await functions.finish_version(name, number, ok=True, build_log="")


async def setup(url: str, tmp_path, nodes: int, clock: Clock):
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    engine = await open_engine(settings)
    functions = FunctionStore(engine)
    invocations = InvocationStore(engine)
    entry = Entry(settings, None, QueueOnly(invocations))
    loops = [Schedules(functions, entry, engine, node=f"node-{n}", clock=clock) for n in range(nodes)]
    return engine, functions, invocations, loops


async def ticks(engine) -> list[tuple]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(schedule_ticks.c.function, schedule_ticks.c.tick_at, schedule_ticks.c.node,
                                         schedule_ticks.c.invocation).order_by(schedule_ticks.c.tick_at))
        return [tuple(row) for row in rows]


class TestNextFire:
    def test_six_fields_are_seconds_first_and_five_are_minutes(self):
        """`* * * * * *` ticks every second; `*/5 * * * *` every fifth minute; strictly after."""
        assert next_fire("* * * * * *", T0) == T0 + 1
        assert next_fire("* * * * * *", T0 + 0.4) == T0 + 1
        assert next_fire("*/5 * * * *", T0) == T0 + 300
        assert next_fire("30 * * * * *", T0) == T0 + 30


class TestExactlyOnce:
    async def test_two_nodes_fire_each_tick_once(self, database_url_factory, tmp_path):
        """Two loops step over the same 20 one-second ticks, in either order and sometimes
        late: every tick has one claim and one queued `schedule` record with the event."""
        clock = Clock(T0 + 0.5)
        engine, functions, invocations, (a, b) = await setup(await database_url_factory(), tmp_path, 2, clock)
        try:
            await deploy(functions, "every-second", [{"type": "schedule", "cron": "* * * * * *",
                                                      "event": {"job": "tick"}}])
            assert await a.step() == [] and await b.step() == []  # first sight: from the next tick on
            fired = []
            for n in range(1, 21):
                clock.now = T0 + n + 0.01
                first, second = (a, b) if n % 2 else (b, a)
                fired += await first.step()
                if n % 5:  # every fifth tick the second node is late: it catches up next time
                    fired += await second.step()
            clock.now = T0 + 21.5
            fired += await a.step() + await b.step()
            assert sorted(f.tick_at for f in fired) == [T0 + n for n in range(1, 22)]
            claims = await ticks(engine)
            assert [c[1] for c in claims] == [T0 + n for n in range(1, 22)]
            assert {c[2] for c in claims} == {"node-0", "node-1"}  # both took part
            records = [await invocations.get(c[3]) for c in claims]
            assert {(r.trigger, r.mode, r.function, r.event) for r in records} == {
                (Trigger.SCHEDULE, "async", "every-second", orjson.dumps({"job": "tick"}).decode())}
        finally:
            await engine.dispose()


class TestDowntime:
    async def test_missed_ticks_are_not_replayed(self, database_url_factory, tmp_path):
        """A node that was down for 5 minutes fires nothing for them when it starts again: its
        first tick is the first one after it started."""
        clock = Clock(T0 + 0.5)
        url = await database_url_factory()
        engine, functions, _, (before,) = await setup(url, tmp_path, 1, clock)
        try:
            await deploy(functions, "every-second", [{"type": "schedule", "cron": "* * * * * *"}])
            await before.step()
            clock.now = T0 + 3.01
            assert [f.tick_at for f in await before.step()] == [T0 + 1, T0 + 2, T0 + 3]
            # Down for five minutes: a new loop (a restarted node) on the same database.
            after = Schedules(functions, before._entry, engine, node="node-0", clock=clock)
            clock.now = T0 + 303.5
            assert await after.step() == []
            clock.now = T0 + 304.01
            assert [f.tick_at for f in await after.step()] == [T0 + 304]
            assert [c[1] for c in await ticks(engine)] == [T0 + 1, T0 + 2, T0 + 3, T0 + 304]
        finally:
            await engine.dispose()

    async def test_a_stalled_loop_skips_ticks_older_than_the_grace(self, database_url_factory, tmp_path):
        """A running loop that stalls for a minute fires only the ticks within TICK_GRACE_S."""
        clock = Clock(T0 + 0.5)
        engine, functions, _, (loop,) = await setup(await database_url_factory(), tmp_path, 1, clock)
        try:
            await deploy(functions, "every-second", [{"type": "schedule", "cron": "* * * * * *"}])
            await loop.step()
            clock.now = T0 + 60.01
            fired = [f.tick_at for f in await loop.step()]
            assert fired == [T0 + n for n in range(61 - int(TICK_GRACE_S), 61)]  # at most 10 s old
        finally:
            await engine.dispose()
