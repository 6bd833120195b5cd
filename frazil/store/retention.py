"""Retention of the invocation history: finished records (with their event, result and logs)
are kept for `Settings.retention_s` and at most `Settings.retention_max` per function.

`Pruner` deletes what is past either limit, in the background, every
`Settings.retention_interval_s`. Invariants:
- a queued or running record is never deleted, however old (a delayed invocation may wait
  longer than the retention period);
- each delete is one short transaction of at most `batch` records, with a pause between two,
  so pruning a large backlog never holds the database's write lock for long;
- after a pass that deleted something, SQLite's write-ahead log is checkpointed
  (`frazil.store.db.checkpoint_wal`).

Error policy: a pass that fails is logged and the next pass, one interval later, starts over;
nothing else waits on pruning. `prune()` runs one whole pass and returns: tests call it to
drain, and the background loop is nothing but it on a timer.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from frazil.background import BackgroundLoop
from frazil.settings import Settings
from frazil.store.db import checkpoint_wal
from frazil.store.invocations import InvocationStore

log = logging.getLogger(__name__)

BATCH = 500  # records per delete: a few milliseconds of write lock
BATCH_PAUSE_S = 0.005  # between two deletes, so that other writers get the lock


@dataclass(frozen=True)
class Retention:
    """The limits; 0 turns one off."""

    max_age_s: float
    max_per_function: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "Retention":
        return cls(settings.retention_s, settings.retention_max)


class Pruner(BackgroundLoop):
    task_name = "retention-pruner"

    def __init__(self, engine: AsyncEngine, store: InvocationStore, retention: Retention, *,
                 interval_s: float, batch: int = BATCH, pause_s: float = BATCH_PAUSE_S, clock=time.time):
        self._engine = engine
        self._store = store
        self._retention = retention
        self._interval_s = interval_s
        self._batch = batch
        self._pause_s = pause_s
        self._clock = clock

    async def prune(self) -> int:
        """One pass: delete every finished record past a limit; answers how many went."""
        deleted = 0
        if self._retention.max_age_s > 0:
            cutoff = self._clock() - self._retention.max_age_s
            deleted += await self._drain(lambda: self._store.prune_older_than(cutoff, self._batch))
        if self._retention.max_per_function > 0:
            for function in await self._store.functions_with_records():
                # The bound is read once per pass (not per batch): counting 10,000 records
                # again for every batch made each batch ten times slower on PostgreSQL.
                last = await self._store.newest_beyond(function, self._retention.max_per_function)
                if last is not None:
                    deleted += await self._drain(lambda: self._store.prune_through(function, last, self._batch))
        if deleted:
            await checkpoint_wal(self._engine)
        return deleted

    async def _drain(self, delete_batch) -> int:
        """Run `delete_batch` until a batch comes back short: nothing is left past the limit."""
        total = 0
        while True:
            n = await delete_batch()
            total += n
            if n < self._batch:
                return total
            await asyncio.sleep(self._pause_s)

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.prune()
                if deleted:
                    log.info("pruned %d invocation records past retention", deleted)
            except Exception:
                log.exception("pruning the invocation history failed; trying again in %s s", self._interval_s)
            await asyncio.sleep(self._interval_s)
