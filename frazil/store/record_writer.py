"""Batches invocation-record writes off the invocation's critical path.

A sync invocation answers its client first; its record (final, and new to the store) joins
a batch that one transaction inserts a few milliseconds later. Readers see pending records through `pending()`, so a
record is visible from the moment the invocation finishes.

Error policy: a failed flush is retried with the records kept (they are never dropped while
the process lives); `close()` flushes whatever is left.
"""
from __future__ import annotations

import asyncio
import logging

from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord

log = logging.getLogger(__name__)


class RecordWriter:
    def __init__(self, store: InvocationStore, *, max_delay_s: float = 0.05, max_batch: int = 500):
        self._store = store
        self._max_delay_s = max_delay_s
        self._max_batch = max_batch
        self._pending: dict[str, InvocationRecord] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self._flushing = asyncio.Lock()  # one batch at a time: two would insert the same rows

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="record-writer")

    def submit(self, record: InvocationRecord) -> None:
        self._pending[record.id] = record
        if len(self._pending) >= self._max_batch or not self._wake.is_set():
            self._wake.set()

    def pending(self, invocation_id: str) -> InvocationRecord | None:
        return self._pending.get(invocation_id)

    async def flush(self) -> None:
        """Write everything pending now (returns once it is in the store)."""
        async with self._flushing:
            while self._pending:
                batch = dict(self._pending)
                await self._store.insert_many(list(batch.values()))
                for key, record in batch.items():
                    if self._pending.get(key) is record:
                        del self._pending[key]

    async def _run(self) -> None:
        while not self._closed:
            await self._wake.wait()
            # Gather what arrives in the next few ms into the same transaction.
            await asyncio.sleep(self._max_delay_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("writing invocation records failed; retrying")
                self._wake.set()
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        self._closed = True
        if self._task:
            self._wake.set()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
