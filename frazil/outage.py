"""The platform's own failures - not the caller's, not a bug: the database cannot be reached (or
stays locked), the disk is full. They are recognised here, in one place (`classify`), and answered as 503 with
Retry-After (frazil.api.errors); `HealthMonitor` keeps `/healthz` honest while they last.

`classify` walks an exception, the driver error SQLAlchemy wraps (`.orig`) and their causes,
and answers an `Outage` or None (None: a bug or a refusal, which stays what it was).

`HealthMonitor`: the platform is degraded while a probe finds an outage (the database does not
answer `SELECT 1`, or the data dir's filesystem has less than MIN_FREE_BYTES left), or since
an outage was reported by a failed request or write and no probe has passed after it. Probes run
when health is asked for and the last one is older than `probe_every_s` (one at a time), so a
busy /healthz costs at most one probe a second and recovery is seen without a restart.
"""
from __future__ import annotations

import asyncio
import enum
import errno
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what 503 answers tell clients to wait: outages are seldom shorter
MIN_FREE_BYTES = 1024 * 1024  # less left on the data dir's filesystem is "disk full"
PROBE_TIMEOUT_S = 2.0


class Cause(str, enum.Enum):
    DATABASE_UNREACHABLE = "database unreachable"
    DATABASE_BUSY = "database busy"  # SQLite: another writer held the lock past busy_timeout
    DISK_FULL = "disk full"


@dataclass(frozen=True)
class Outage:
    cause: Cause
    detail: str  # the underlying error, one line

    @property
    def message(self) -> str:
        if self.cause is Cause.DISK_FULL:
            return f"the platform's disk is full ({self.detail}); try again later"
        if self.cause is Cause.DATABASE_BUSY:
            return f"the platform's database is busy ({self.detail}); try again later"
        return f"the platform's database is unreachable ({self.detail}); try again later"

    @property
    def reason(self) -> str:
        """One line for /healthz."""
        return f"{self.cause.value}: {self.detail}"


# PostgreSQL SQLSTATEs (class 08: connection exceptions; 57P0x: shutdown or not accepting
# connections yet; 53xxx: out of resources; 3D000: the database does not exist).
_PG_DISK_FULL = {"53100"}
_PG_UNREACHABLE_CLASSES = ("08", "57P", "53")
_PG_UNREACHABLE = {"3D000"}
# 55000 is also "object not in prerequisite state" in general; only this message is an outage.
_PG_NOT_ACCEPTING = "not currently accepting connections"
_SQLITE_DISK_FULL = ("database or disk is full",)
_SQLITE_UNREACHABLE = ("unable to open database file", "disk i/o error")
_SQLITE_BUSY = ("database is locked", "database table is locked")


def classify(exc: BaseException) -> Outage | None:
    """The outage `exc` reports, or None when it is not one."""
    for err in _chain(exc):
        detail = _one_line(err)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return Outage(Cause.DISK_FULL, detail)
        if isinstance(err, sqlite3.Error):
            message = str(err).lower()
            if any(m in message for m in _SQLITE_DISK_FULL):
                return Outage(Cause.DISK_FULL, detail)
            if any(m in message for m in _SQLITE_UNREACHABLE):
                return Outage(Cause.DATABASE_UNREACHABLE, detail)
            if any(m in message for m in _SQLITE_BUSY):
                return Outage(Cause.DATABASE_BUSY, detail)
        state = getattr(err, "sqlstate", None)
        if isinstance(state, str):
            if state in _PG_DISK_FULL:
                return Outage(Cause.DISK_FULL, detail)
            if (state in _PG_UNREACHABLE or state.startswith(_PG_UNREACHABLE_CLASSES)
                    or _PG_NOT_ACCEPTING in str(err)):
                return Outage(Cause.DATABASE_UNREACHABLE, detail)
        if isinstance(err, sa_exc.DBAPIError) and err.connection_invalidated:
            return Outage(Cause.DATABASE_UNREACHABLE, _one_line(err.orig or err))
        if isinstance(err, sa_exc.TimeoutError):  # no pooled connection came free in time
            return Outage(Cause.DATABASE_UNREACHABLE, detail)
        if ((isinstance(err, (ConnectionError, TimeoutError)) or type(err).__name__ in _DRIVER_DISCONNECTS)
                and _raised_by_database_code(err)):
            return Outage(Cause.DATABASE_UNREACHABLE, detail)
    return None


# asyncpg's errors for a connection that went away under a query (no SQLSTATE of their own).
_DRIVER_DISCONNECTS = {"ConnectionDoesNotExistError", "InterfaceError", "InternalClientError"}
_DATABASE_PACKAGES = ("/sqlalchemy/", "/asyncpg/", "/aiosqlite/")


def _raised_by_database_code(err: BaseException) -> bool:
    """Whether `err` passed through the database packages: a refused connection or a timeout
    is the database's only then (the SDK's HTTP proxy meets those too, and they are not ours)."""
    tb = err.__traceback__
    while tb is not None:
        if any(p in tb.tb_frame.f_code.co_filename for p in _DATABASE_PACKAGES):
            return True
        tb = tb.tb_next
    return False


def _chain(exc: BaseException):
    """`exc`, the driver errors it wraps and their causes, each once."""
    seen, todo = set(), [exc]
    while todo:
        err = todo.pop(0)
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        yield err
        todo += [getattr(err, "orig", None), err.__cause__]
        if not err.__suppress_context__:  # `raise ... from None` disowns it
            todo.append(err.__context__)


def _one_line(err: BaseException) -> str:
    text_ = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text_ = text_.split("[SQL:")[0].strip()
    return f"{type(err).__name__}: {text_}"[:300] if text_ else type(err).__name__


class HealthMonitor:
    """Whether the platform's own resources work (see the module docstring)."""

    def __init__(self, engine, data_dir: Path, *, probe_every_s: float = 1.0):
        self._engine = engine
        self._data_dir = Path(data_dir)
        self._probe_every_s = probe_every_s
        self._probed: list[Outage] = []  # what the last probe found
        self._reported: dict[Cause, Outage] = {}  # reported since the last probe began
        self._probed_at = float("-inf")  # monotonic
        self._probing: asyncio.Task | None = None

    def report(self, outage: Outage) -> None:
        """A request or a write met `outage`: degraded until a later probe passes."""
        if outage.cause not in self._reported:
            log.warning("platform degraded: %s", outage.reason)
        self._reported[outage.cause] = outage
        self._probed_at = float("-inf")  # look again at the next check

    async def outages(self) -> list[Outage]:
        """The outages now (empty: healthy), probing first if the last probe is stale."""
        if time.monotonic() - self._probed_at >= self._probe_every_s:
            if self._probing is None or self._probing.done():
                self._probing = asyncio.ensure_future(self._probe())
            await asyncio.shield(self._probing)
        found = {o.cause: o for o in self._probed}
        return list({**self._reported, **found}.values())

    async def _probe(self) -> None:
        started = time.monotonic()
        reported_before = dict(self._reported)
        found = [o for o in (await self._probe_database(), self._probe_disk()) if o is not None]
        was = {o.cause for o in self._probed} | set(self._reported)
        self._probed = found
        # Reports that arrived while probing stay: the probe may have started before their failure.
        for cause, outage in reported_before.items():
            if self._reported.get(cause) is outage:
                del self._reported[cause]
        self._probed_at = started
        now = {o.cause for o in found} | set(self._reported)
        for cause in was - now:
            log.warning("platform recovered: %s is over", cause.value)

    async def _probe_database(self) -> Outage | None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                async with self._engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except TimeoutError:
            return Outage(Cause.DATABASE_UNREACHABLE, f"no answer to a probe within {PROBE_TIMEOUT_S:g} s")
        except Exception as exc:  # noqa: BLE001 - whatever stops a probe is an outage of the database
            return classify(exc) or Outage(Cause.DATABASE_UNREACHABLE, _one_line(exc))
        return None

    def _probe_disk(self) -> Outage | None:
        try:
            st = os.statvfs(self._data_dir)
        except OSError as exc:
            return Outage(Cause.DISK_FULL, f"the data dir cannot be examined: {exc}")
        free = st.f_bavail * st.f_frsize
        if free < MIN_FREE_BYTES:
            return Outage(Cause.DISK_FULL, f"{free} bytes left on the data dir's filesystem")
        return None
