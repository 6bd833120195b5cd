"""RecordWriter.close() while its own batch is being written (found by the in-process pool
tests: a platform stopped a few ms after its last sync invocation)."""
import asyncio
import time

from frazil.settings import Settings
from frazil.store.db import open_engine
from frazil.store.invocations import InvocationStore
from frazil.store.models import InvocationRecord, InvocationStatus
from frazil.store.record_writer import RecordWriter


class SlowToReturn(InvocationStore):
    """Commits a batch, then holds the writer before it returns: the moment the batch is in
    the store but the writer has not yet crossed it off."""

    def __init__(self, engine):
        super().__init__(engine)
        self.committed = asyncio.Event()
        self.release = asyncio.Event()

    async def insert_many(self, records):
        await super().insert_many(records)
        self.committed.set()
        await self.release.wait()


async def test_close_during_a_batch_writes_each_record_once(tmp_path):
    """close() lets the batch in flight finish instead of cancelling it after its commit (which
    left its records pending, to be inserted a second time: a UNIQUE violation)."""
    engine = await open_engine(Settings(data_dir=tmp_path))
    try:
        store = SlowToReturn(engine)
        writer = RecordWriter(store, max_delay_s=0)
        writer.start()
        now = time.time()
        record = InvocationRecord(id="0" * 28, function="fn", version=1, mode="sync",
                                  status=InvocationStatus.SUCCEEDED, created_at=now)
        writer.submit(record)
        await asyncio.wait_for(store.committed.wait(), 5)
        closing = asyncio.create_task(writer.close())  # runs before the writer resumes:
        store.release.set()  # tasks run in the order they became ready
        await asyncio.wait_for(closing, 5)
        assert writer.pending(record.id) is None
        assert (await store.get(record.id)) == record
    finally:
        await engine.dispose()
