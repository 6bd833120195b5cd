"""frazil.outage.classify on the errors real drivers raise."""
import errno
import sqlite3

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from frazil.outage import Cause, classify


def sqlite_error(tmp_path, sql: str) -> Exception:
    engine = create_engine(f"sqlite:///{tmp_path / 'nope' / 'x.db'}")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    except Exception as exc:  # noqa: BLE001 - the error is what we look at
        return exc
    finally:
        engine.dispose()
    raise AssertionError("expected an error")


def test_an_unopenable_sqlite_database_is_unreachable(tmp_path):
    exc = sqlite_error(tmp_path, "SELECT 1")
    assert isinstance(exc, OperationalError)
    assert classify(exc).cause is Cause.DATABASE_UNREACHABLE


def test_no_space_is_disk_full():
    assert classify(OSError(errno.ENOSPC, "No space left on device")).cause is Cause.DISK_FULL
    assert classify(sqlite3.OperationalError("database or disk is full")).cause is Cause.DISK_FULL


def test_a_locked_sqlite_database_is_busy(tmp_path):
    """A second writer waiting past busy_timeout gets 'database is locked': busy, not a bug."""
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (a)")
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, timeout=0.05)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            waiter.execute("INSERT INTO t VALUES (1)")
        outage = classify(caught.value)
        assert outage.cause is Cause.DATABASE_BUSY and "busy" in outage.message
    finally:
        waiter.close()
        holder.close()


@pytest.mark.parametrize("exc", [ValueError("bug"), sqlite3.IntegrityError("UNIQUE constraint failed"),
                                 ConnectionRefusedError("not from a database package")])
def test_bugs_and_refusals_are_not_outages(exc):
    assert classify(exc) is None


def test_a_suppressed_context_is_not_followed():
    try:
        try:
            raise OSError(errno.ENOSPC, "full")
        except OSError:
            raise ValueError("unrelated") from None
    except ValueError as exc:
        assert classify(exc) is None
