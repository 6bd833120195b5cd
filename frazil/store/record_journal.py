"""This process's journal of the invocation records it answered but has not stored yet.

A sync invocation is answered before its record is in the store: `RecordWriter` batches
records into one transaction every few milliseconds. Each record is first appended here, with
one write(2) before the answer is sent, so a record whose call was answered survives the
server process dying (kill -9, the OOM killer) before its batch commits: the next start on the
data dir stores it (`RecordWriter.recover`).

Durability: the kernel holds every line once `append` returns, so a process crash loses none.
Lines are not fsync'd: a machine crash (power loss) can lose the last ones, as it can lose
SQLite's last commits (the store runs synchronous=NORMAL). An fdatasync per answer costs 0.3 to
0.5 ms on this kind of disk, about the whole overhead a warm invoke is allowed over a bare
round trip.

Layout, in <data_dir>/journal (0700, files 0600):
- `<writer>.lock`: flocked by the writing process while it lives (several processes may share
  a data dir, as cluster nodes on one machine do);
- `<writer>-<seq>.jsonl`: segments, one JSON object per line: a record's fields (`encode`;
  orjson writes the dataclass itself, an eighth of the cost of making its stored columns).
The writer seals the current segment as each batch starts (`seal`) and deletes the sealed ones
once that batch is committed (`release`), so the journal holds about one batch. `take_dead`
reads the segments of every writer whose lock is free (it died, or closed with records it
could not store) and hands them over to be stored again; a torn last line (the process died
in the middle of a write) is skipped.
"""
from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import secrets
from pathlib import Path

import orjson

from frazil.store.models import InvocationRecord, InvocationStatus, Trigger
from frazil.store.textcodec import from_column, to_column

log = logging.getLogger(__name__)

JOURNAL_DIR = "journal"
DIR_MODE = 0o700
FILE_MODE = 0o600
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
_FIELDS = frozenset(f.name for f in dataclasses.fields(InvocationRecord))
# What a function or caller supplied: may hold a lone surrogate, which JSON encoders refuse.
_FREE_TEXT = ("logs", "result", "error", "event")
ESCAPED = "escaped"  # the key of a line whose free text went through frazil.store.textcodec


class RecordJournal:
    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir) / JOURNAL_DIR
        self.dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.writer = secrets.token_hex(6)
        # Locked before it has its name: no other process ever sees this writer's lock free.
        staging = self.dir / f"{self.writer}.lock.new"
        self._lock_fd = os.open(staging, _FLAGS, FILE_MODE)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # nobody else knows the file: never waits
        os.rename(staging, self.dir / f"{self.writer}.lock")
        self._seq = 0
        self._fd = os.open(self._segment(self._seq), _FLAGS, FILE_MODE)
        self._size = 0  # bytes in the current segment
        self._sealed: list[int] = []  # segments not yet released

    def _segment(self, seq: int) -> Path:
        return self.dir / f"{self.writer}-{seq:08d}.jsonl"

    def append(self, record: InvocationRecord) -> None:
        """Journal `record` (raises OSError, e.g. a full disk)."""
        line = encode(record) + b"\n"
        os.write(self._fd, line)  # O_APPEND: one write, whole or (at a crash) a torn last line
        self._size += len(line)

    def seal(self) -> int:
        """Start a new segment for what is appended from now on; answers the last sealed
        segment's number (pass it to `release` once everything appended before is stored)."""
        if self._size:
            fd = os.open(self._segment(self._seq + 1), _FLAGS, FILE_MODE)  # raises with nothing changed
            os.close(self._fd)
            self._sealed.append(self._seq)
            self._seq += 1
            self._fd = fd
            self._size = 0
        return self._seq - 1

    def release(self, upto: int) -> None:
        """Delete the sealed segments up to number `upto`: their records are in the store."""
        while self._sealed and self._sealed[0] <= upto:
            _unlink(self._segment(self._sealed.pop(0)))

    def close(self, *, empty: bool) -> None:
        """Stop writing. With `empty` (everything appended is stored) the files go; otherwise
        they stay, and the next start stores them."""
        os.close(self._fd)
        self._fd = -1  # a late append fails (EBADF) rather than write to a reused descriptor
        if empty:
            self.release(self._seq)
            _unlink(self._segment(self._seq))
            _unlink(self.dir / f"{self.writer}.lock")
        os.close(self._lock_fd)  # releases the flock: from now on, another process takes over

    def take_dead(self) -> tuple[list[InvocationRecord], list[Path]]:
        """The records journaled by writers that are gone (their lock is free), and their files
        (the caller removes them once it holds the records itself)."""
        rows: list[InvocationRecord] = []
        files: list[Path] = []
        for lock in sorted(self.dir.glob("*.lock")):
            writer = lock.stem
            if writer == self.writer or not _free(lock):
                continue
            for segment in sorted(self.dir.glob(f"{writer}-*.jsonl")):
                rows += _read_segment(segment)
                files.append(segment)
            files.append(lock)
        return rows, files


def _free(lock: Path) -> bool:
    """Whether nobody holds `lock` (its writer is gone)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # another starting process took it over just now
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def encode(record: InvocationRecord) -> bytes:
    try:
        return orjson.dumps(record)  # a dataclass: its fields, enums by their values
    except orjson.JSONEncodeError:  # a lone surrogate in free text: escaped the store's way
        escaped = {name: to_column(getattr(record, name)) for name in _FREE_TEXT}
        return orjson.dumps({ESCAPED: dataclasses.replace(record, **escaped)})


def decode(data: dict) -> InvocationRecord:
    """The record `encode` wrote (maybe another release's: fields it does not know are ignored)."""
    escaped = ESCAPED in data
    fields = {name: value for name, value in (data[ESCAPED] if escaped else data).items() if name in _FIELDS}
    fields["status"] = InvocationStatus(fields["status"])
    fields["trigger"] = Trigger(fields.get("trigger") or Trigger.API.value)
    if escaped:
        fields.update({name: from_column(fields.get(name)) for name in _FREE_TEXT})
    return InvocationRecord(**fields)


def _read_segment(path: Path) -> list[InvocationRecord]:
    rows = []
    lines = path.read_bytes().split(b"\n")
    for i, line in enumerate(lines):
        if not line:
            continue
        try:
            rows.append(decode(orjson.loads(line)))
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            torn = i == len(lines) - 1  # no newline after it: the write was cut short
            log.log(logging.WARNING if torn else logging.ERROR, "skipped %s line %d of %s (%d bytes)",
                    "the torn last" if torn else "an unreadable", i + 1, path, len(line))
    return rows


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def remove_files(paths: list[Path]) -> None:
    for path in paths:
        _unlink(path)
