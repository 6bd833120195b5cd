"""Schedule triggers: each tick of an active version's cron fires one async invocation
(trigger `schedule`, the configured event) through the one entry point (frazil.scheduler.entry).

Every node that runs the async queue (frazil.wiring.runs_async_queue) runs a `Schedules` loop.

Exactly once per tick, whatever number of nodes: a tick is fired only by the node whose INSERT
of (function, trigger index, tick time) into `schedule_ticks` went in; that primary key is the
claim, so a second node's INSERT of the same tick does nothing and it moves on. The claim and
the queued invocation are two transactions: when queueing fails after the claim, the claim is
released so that the tick is tried again (within TICK_GRACE_S); if even that release fails
(the database went away), or the node dies between the two, the tick is lost - at most once,
never twice.

Downtime is not replayed: a loop starts each trigger at its first tick after the loop first
sees it, so ticks missed while no node ran are not fired at all, and the schedule continues
from the next tick. A tick that a running loop reaches late (a stall, a busy database) is
still fired if it is at most TICK_GRACE_S old; older ones are skipped.

A trigger is known by (function, index, cron): a deploy that keeps the cron keeps its
cursor; one that changes it starts the new cron at its next tick.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
from cronsim import CronSim
from sqlalchemy import and_, delete, update
from sqlalchemy.ext.asyncio import AsyncEngine

from frazil.background import BackgroundLoop
from frazil.scheduler.entry import Call, Entry, Mode
from frazil.store.functions import FunctionStore
from frazil.store.models import FunctionVersion, Trigger
from frazil.store.schema import schedule_ticks
from frazil.store.sql import insert_ignore

log = logging.getLogger(__name__)

SCHEDULE = "schedule"  # the trigger `type` this module fires
TICK_GRACE_S = 10.0  # a tick reached later than this after its time is skipped, not fired
MAX_SLEEP_S = 1.0  # a deploy, rollback or delete is noticed within this
KEEP_TICKS_S = 3600.0  # claims older than this are deleted (none can be claimed again)
CLEANUP_EVERY_S = 60.0


def next_fire(cron: str, after: float) -> float:
    """The first tick of `cron` (UTC) strictly after the time `after` (epoch seconds)."""
    start = datetime.fromtimestamp(after, timezone.utc)
    return next(CronSim(cron, start)).timestamp()


@dataclass(frozen=True)
class Fired:
    """A tick this loop claimed and queued."""

    function: str
    trigger: int
    tick_at: float
    invocation: str


class Schedules(BackgroundLoop):
    task_name = "schedules"

    def __init__(self, functions: FunctionStore, entry: Entry, engine: AsyncEngine, *, node: str, clock=time.time):
        self._functions = functions
        self._entry = entry
        self._engine = engine
        self._node = node
        self._clock = clock
        # (function, trigger index, cron) -> its next tick not yet handled by this loop.
        self._cursors: dict[tuple[str, int, str], float] = {}
        self._cleaned_at = 0.0

    async def step(self) -> list[Fired]:
        """One pass (the loop's body; tests call it to drive the schedules): fire every due
        tick this node wins the claim of. Raises what the store raises; a trigger whose tick
        failed keeps its cursor there, to be tried again next pass."""
        now = self._clock()
        fired: list[Fired] = []
        seen = set()
        for version in await self._functions.scheduled():
            for index, trigger in enumerate(version.triggers):
                if trigger.get("type") != SCHEDULE:
                    continue
                key = (version.function, index, trigger["cron"])
                seen.add(key)
                tick = self._cursors.get(key)
                if tick is None:  # first seen (a start, a deploy): from its next tick on
                    self._cursors[key] = next_fire(trigger["cron"], now)
                    continue
                if now - tick > TICK_GRACE_S:  # far behind (a long stall): skip to the grace window
                    tick = next_fire(trigger["cron"], now - TICK_GRACE_S)
                while tick <= now:
                    done = await self._fire(version, index, trigger, tick)
                    if done is not None:
                        fired.append(done)
                    tick = next_fire(trigger["cron"], tick)
                    self._cursors[key] = tick  # only past a tick that was handled
        for key in self._cursors.keys() - seen:  # deleted, redeployed without it, or its cron changed
            del self._cursors[key]
        if now - self._cleaned_at >= CLEANUP_EVERY_S:
            async with self._engine.begin() as conn:
                await conn.execute(delete(schedule_ticks).where(schedule_ticks.c.tick_at < now - KEEP_TICKS_S))
            self._cleaned_at = now
        return fired

    def next_due(self) -> float | None:
        """The earliest tick this loop waits for (None: no schedules)."""
        return min(self._cursors.values(), default=None)

    async def _fire(self, version: FunctionVersion, index: int, trigger: dict, tick: float) -> Fired | None:
        """Claim `tick` and queue its invocation; None when another node claimed it first."""
        where = and_(schedule_ticks.c.function == version.function, schedule_ticks.c.trigger == index,
                     schedule_ticks.c.tick_at == tick)
        async with self._engine.begin() as conn:
            # The exactly-once claim: the primary key admits one row per tick, so exactly one
            # node's INSERT goes in; every other node's does nothing (rowcount 0).
            claimed = await insert_ignore(conn, schedule_ticks, dict(
                function=version.function, trigger=index, tick_at=tick, node=self._node, invocation=None,
                claimed_at=self._clock()))
        if claimed.rowcount != 1:
            return None
        try:
            started = await self._entry.invoke(version, orjson.dumps(trigger.get("event") or {}),
                                               Call(trigger=Trigger.SCHEDULE, mode=Mode.ASYNC))
        except Exception:
            # Not queued (Entry.invoke commits the record or raises): let the tick be tried again.
            # Not on cancellation (close): it may have come after the record's commit, and a
            # released claim could then fire the tick twice.
            async with self._engine.begin() as conn:
                await conn.execute(delete(schedule_ticks).where(where))
            raise
        async with self._engine.begin() as conn:
            await conn.execute(update(schedule_ticks).where(where).values(invocation=started.record.id))
        return Fired(version.function, index, tick, started.record.id)

    # Error policy: a pass that fails (the database unreachable, a record that cannot be
    # written) is logged and the loop goes on; the failed trigger's cursor stays at its tick,
    # so the next pass, MAX_SLEEP_S later, tries it again while it is within TICK_GRACE_S.
    # Cancellation (close) is the only way out.
    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:
                log.exception("a pass over the schedules failed; trying again in %s s", MAX_SLEEP_S)
                await asyncio.sleep(MAX_SLEEP_S)  # its cursor is due already: do not spin on it
                continue
            due = self.next_due()
            wait = MAX_SLEEP_S if due is None else min(MAX_SLEEP_S, max(0.0, due - self._clock()))
            await asyncio.sleep(wait + 0.002)  # just past the tick: `tick <= now` holds on waking
