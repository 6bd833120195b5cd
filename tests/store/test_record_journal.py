"""The record journal (frazil.store.record_journal) with the real writer and a real SQLite store:
it holds about one batch, what a writer left is taken over by the next one (a torn last line
skipped, a record already stored not written twice), and a live writer's journal is not."""
from __future__ import annotations

import dataclasses
import os

from frazil.settings import Settings
from frazil.store.db import open_engine
from frazil.store.invocations import InvocationStore
from frazil.store.record_journal import JOURNAL_DIR, RecordJournal
from frazil.store.record_writer import RecordWriter
from tests.store.test_record_writer import record


def journal_files(data_dir) -> list[str]:
    return sorted(os.listdir(data_dir / JOURNAL_DIR))


async def test_a_flushed_batch_leaves_its_segments_and_a_closed_writer_nothing(tmp_path):
    engine = await open_engine(Settings(data_dir=tmp_path))
    try:
        journal = RecordJournal(tmp_path)
        writer = RecordWriter(InvocationStore(engine), journal=journal)
        for n in range(5):
            writer.submit(record(n))
        await writer.flush()
        writer.submit(record(5))  # in the segment that flush opened
        segments = [f for f in journal_files(tmp_path) if f.endswith(".jsonl")]
        assert len(segments) == 1 and (tmp_path / JOURNAL_DIR / segments[0]).read_bytes().count(b"\n") == 1
        await writer.close()
        assert journal_files(tmp_path) == []
        assert len(await InvocationStore(engine).list_for_function("fn", limit=100)) == 6
    finally:
        await engine.dispose()


async def test_the_next_writer_stores_what_a_dead_one_journaled(tmp_path):
    engine = await open_engine(Settings(data_dir=tmp_path))
    store = InvocationStore(engine)
    try:
        dead = RecordJournal(tmp_path)
        stored_already = record(1)
        await store.insert_many([stored_already])  # its batch committed just before the crash
        for r in (stored_already, dataclasses.replace(record(2), logs="nul \x00 and \udc80\n"), record(3)):
            dead.append(r)
        os.write(dead._fd, b'{"id": "torn')  # the process died in the middle of a write
        live = RecordJournal(tmp_path)  # another process on the same data dir, alive
        live.append(record(9))
        dead.close(empty=False)  # the lock is free, as after a kill

        writer = RecordWriter(store, journal=RecordJournal(tmp_path))
        assert writer.recover() == 3
        assert writer.pending(record(2).id).logs == "nul \x00 and \udc80\n"  # readable at once
        await writer.close()
        found = {r.id: r for r in await store.list_for_function("fn", limit=100)}
        assert sorted(found) == [record(n).id for n in (1, 2, 3)]
        assert (await store.get(record(2).id)).logs == "nul \x00 and \udc80\n"
        # Only the live writer's files are left: its lock and its segment.
        assert journal_files(tmp_path) == sorted([f"{live.writer}.lock", f"{live.writer}-00000000.jsonl"])
        live.close(empty=True)
    finally:
        await engine.dispose()
