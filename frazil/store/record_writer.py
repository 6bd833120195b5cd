"""Batches invocation-record writes off the invocation's critical path.

A sync invocation answers its client first; its record (final, and new to the store) joins
a batch that one transaction inserts a few milliseconds later. Readers see pending records through `pending()`, so a
record is visible from the moment the invocation finishes. With a journal
(frazil.store.record_journal) each record is appended to it before the answer goes out, so
one answered but not yet stored survives a crash: `recover()` at the next start takes over
what dead writers journaled. Inserts skip records already stored (a journaled batch may have
committed just before the crash).

Error policy:
- An outage (frazil.outage: the database unreachable, the disk full) keeps every record
  pending and is retried with a backoff from RETRY_FIRST_S doubling to RETRY_MAX_S, while
  the process lives; `on_outage` hears of it (the health monitor).
- Any other failure is the data's: the batch is split in halves, each written on its own,
  down to the one record that fails. That record is written again with its free-text fields
  replaced by a note (`_made_safe`); if even that fails, it is logged and dropped. So one bad
  record never holds up the others, and no batch is retried forever.
- `close()` flushes what is left, retrying an outage for at most CLOSE_DEADLINE_S, then logs
  how many records it could not write (they stay in the journal for the next start).
- A journal append that fails (a full disk, a record JSON cannot hold) leaves the record
  pending in memory only, and is logged once until an append succeeds again: the invocation
  is answered all the same. A segment that cannot be sealed stays open: its records are
  released with a later batch.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Callable

import orjson

from frazil.outage import Outage, classify
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord
from frazil.store.record_journal import RecordJournal, remove_files

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
CLOSE_DEADLINE_S = 5.0


class RecordWriter:
    def __init__(self, store: InvocationStore, *, max_delay_s: float = 0.05, max_batch: int = 500,
                 on_outage: Callable[[Outage], None] | None = None, journal: RecordJournal | None = None):
        self._store = store
        self._journal = journal
        self._journal_failing = False
        self._max_delay_s = max_delay_s
        self._max_batch = max_batch
        self._on_outage = on_outage
        self._pending: dict[str, InvocationRecord] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self._flushing = asyncio.Lock()  # one batch at a time: two would insert the same rows
        self.dropped = 0  # records that could not be stored even made safe (logged each)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="record-writer")

    def submit(self, record: InvocationRecord) -> None:
        if self._journal is not None:
            self._journal_append(record)
        self._pending[record.id] = record
        if len(self._pending) >= self._max_batch or not self._wake.is_set():
            self._wake.set()

    def _journal_append(self, record: InvocationRecord) -> None:
        try:
            self._journal.append(record)
        except (OSError, TypeError) as exc:  # TypeError: not JSON (orjson's JSONEncodeError)
            if not self._journal_failing:
                log.error("cannot journal invocation records (%s); until this is fixed, the ones not yet "
                          "stored are lost if the server dies", exc)
            self._journal_failing = True
            return
        self._journal_failing = False

    def recover(self) -> int:
        """Take over the records that writers which are gone journaled and never stored (call
        before `start`); answers how many."""
        if self._journal is None:
            return 0
        records, files = self._journal.take_dead()
        for record in records:
            self.submit(record)  # journaled again, as ours, before theirs go
        remove_files(files)
        if records:
            log.warning("recovered %d invocation records journaled before the server stopped without "
                        "storing them", len(records))
        return len(records)

    def _seal(self) -> int | None:
        if self._journal is None:
            return None
        try:
            return self._journal.seal()
        except OSError as exc:
            log.warning("cannot start a new journal segment (%s); the current one grows until it can", exc)
            return None

    def pending(self, invocation_id: str) -> InvocationRecord | None:
        return self._pending.get(invocation_id)

    async def flush(self) -> None:
        """Write everything pending now (returns once it is in the store). Raises only for an
        outage, with the records not yet written still pending."""
        async with self._flushing:
            while self._pending:
                # Everything journaled up to here is pending now (or stored): once this batch
                # is written, the sealed segments hold nothing the store lacks.
                sealed = self._seal()
                await self._write(list(self._pending.values()))
                if sealed is not None:
                    self._journal.release(sealed)

    async def _write(self, records: list[InvocationRecord]) -> None:
        """Insert `records`, isolating the ones that fail (see the error policy)."""
        try:
            await self._store.insert_many(records)
        except Exception as exc:  # noqa: BLE001 - sorted below: an outage, or bad data
            outage = classify(exc)
            if outage is not None:
                if self._on_outage:
                    self._on_outage(outage)
                raise
            if len(records) == 1:
                await self._write_alone(records[0], exc)
                return
            middle = len(records) // 2
            await self._write(records[:middle])
            await self._write(records[middle:])
            return
        self._written(records)

    async def _write_alone(self, record: InvocationRecord, exc: Exception) -> None:
        log.error("invocation record %s of %s could not be stored (%s: %s); storing it without its "
                  "result, event and logs", record.id, record.function, type(exc).__name__, exc)
        try:
            await self._store.insert_many([_made_safe(record, exc)])
        except Exception as again:  # noqa: BLE001
            if classify(again) is not None:
                raise
            self.dropped += 1
            log.error("invocation record %s of %s dropped: it cannot be stored even so (%s: %s)",
                      record.id, record.function, type(again).__name__, again)
        self._written([record])

    def _written(self, records: list[InvocationRecord]) -> None:
        for record in records:
            if self._pending.get(record.id) is record:  # not replaced by a newer version meanwhile
                del self._pending[record.id]

    async def _run(self) -> None:
        backoff = RETRY_FIRST_S
        while not self._closed:
            await self._wake.wait()
            # Gather what arrives in the next few ms into the same transaction.
            await asyncio.sleep(self._max_delay_s)
            self._wake.clear()
            try:
                await self.flush()
                backoff = RETRY_FIRST_S
            except Exception as exc:  # noqa: BLE001 - an outage (flush raises nothing else)
                log.warning("writing %d invocation records failed (%s); retrying in %g s",
                            len(self._pending), exc.__class__.__name__, backoff)
                self._wake.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)

    async def close(self) -> None:
        self._closed = True
        if self._task:
            # Cancelled only between batches: a batch cancelled after its commit would stay
            # pending and be inserted a second time by the flush below.
            async with self._flushing:
                self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        deadline = time.monotonic() + CLOSE_DEADLINE_S
        while True:
            try:
                await self.flush()
                break
            except Exception as exc:  # noqa: BLE001 - an outage
                if time.monotonic() >= deadline:
                    log.error("%d invocation records were not stored at shutdown%s: %s", len(self._pending),
                              "; they stay journaled for the next start" if self._journal else "", exc)
                    break
                await asyncio.sleep(RETRY_FIRST_S)
        if self._journal is not None:
            self._journal.close(empty=not self._pending)


def _made_safe(record: InvocationRecord, exc: Exception) -> InvocationRecord:
    """`record` with its free-text fields (what a function or caller supplied) replaced by a
    note: its status, timings and the rest stay true."""
    note = (f"frazil could not store this invocation's result, event and logs "
            f"({type(exc).__name__}); they were dropped")
    error = orjson.dumps({"type": "RecordNotStorable", "message": note, "stack": ""}).decode()
    return dataclasses.replace(record, result=None, event=None, logs=f"[{note}]\n", error=error)
