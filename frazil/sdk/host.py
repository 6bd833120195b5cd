"""`SdkHost`: the platform's side of the SDK channel.

The channel is the instance's own protocol socketpair (there is no other way out of a
sandbox): the runtime sends `{"type": "sdk_call", "call": N, "sdk_token": ..., "op": ..., ...}`
and the instance passes the frame to `SdkHost.handle`, whose answer goes back as the
`sdk_reply` for that call: `{"ok": true, "value": ...}` or `{"ok": false, "error": {"type",
"message", "status"}}`.

The credential: every invoke frame carries a fresh random `sdk_token` that lives only for that
invocation (`Instance.sdk_token`, None between invocations). A call is served only if it carries
exactly the token of the invocation running on the instance it came from; anything else is
refused before any work is done. Nothing is in the function's environment, and a token kept
by a function is worthless once its invocation ends. HTTP calls still in flight when their
invocation ends are cancelled when the instance's next invocation makes its first HTTP call,
and none outlives its own invocation's deadline.

Operations (`op`): db.insert, db.find, db.get, db.count, db.update, db.delete (tables), and
db.create_table, db.set_acl, db.drop, db.tables — all as the admin principal, which bypasses
table ACLs; http.request through `HttpProxy`, at most `http_max_in_flight` per instance.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from frazil.data.acl import ADMIN
from frazil.errors import BadRequest, FrazilError, ServiceUnavailable
from frazil.sdk.errors import CallAborted, CredentialRefused
from frazil.sdk.proxy import HttpProxy, OutboundRequest

log = logging.getLogger(__name__)

Op = Callable[["SdkHost", Any, dict], Awaitable[Any]]


# db calls one instance may have running at once; more wait their turn. Each is short, but a
# function that fires thousands at once must not monopolise the store every function shares.
DB_CALLS_IN_FLIGHT = 16


@dataclass
class _InstanceCalls:
    """One instance's SDK calls: its HTTP and db slots, and the HTTP calls in flight for
    `token`'s invocation."""

    http_slots: asyncio.Semaphore
    db_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(DB_CALLS_IN_FLIGHT))
    token: str | None = None
    in_flight: set[asyncio.Task] = field(default_factory=set)

    def enter(self, token: str) -> None:
        """A call of invocation `token` arrives: calls of an earlier invocation are cancelled."""
        if token != self.token:
            for task in self.in_flight:
                task.cancel()
            self.in_flight = set()
            self.token = token


class SdkHost:
    def __init__(self, platform):
        self._platform = platform
        self._settings = platform.settings
        self.proxy = HttpProxy(platform.settings)
        # Per-instance state lives as long as the instance object does.
        self._calls: weakref.WeakKeyDictionary[Any, _InstanceCalls] = weakref.WeakKeyDictionary()

    def handle(self, instance, message: dict) -> Awaitable[dict]:
        """Check one sdk_call's credential now, as its frame arrives (a call read just before
        its invocation's result frame is still that invocation's), and return the coroutine
        that serves it; the answer's fields go into the sdk_reply."""
        try:
            self._authenticate(instance, message)
        except CredentialRefused as exc:
            log.info("refused an SDK call (%s) from instance %s: %s", message.get("op"), instance.id, exc.message)
            return _answer(_error(exc))
        return self._serve(instance, message)

    async def _serve(self, instance, message: dict) -> dict:
        op = message.get("op")
        try:
            serve = OPS.get(op) if isinstance(op, str) else None
            if serve is None:
                raise BadRequest(f"unknown SDK operation {op!r}")
            if op.startswith("db."):
                async with self._state(instance).db_slots:
                    return {"ok": True, "value": await serve(self, instance, message)}
            return {"ok": True, "value": await serve(self, instance, message)}
        except FrazilError as exc:
            return _error(exc)

    async def close(self) -> None:
        await self.proxy.close()

    def _state(self, instance) -> _InstanceCalls:
        state = self._calls.get(instance)
        if state is None:
            state = self._calls[instance] = _InstanceCalls(asyncio.Semaphore(self._settings.http_max_in_flight))
        return state

    @staticmethod
    def _authenticate(instance, message: dict) -> None:
        token, current = message.get("sdk_token"), instance.sdk_token
        if not isinstance(token, str) or not token:
            raise CredentialRefused("the SDK call carries no credential")
        if current is None or instance.current_invocation is None:
            raise CredentialRefused("the SDK call's credential has expired: its invocation has ended, and no "
                                    "invocation is running on this instance")
        if not secrets.compare_digest(token.encode(), current.encode()):
            raise CredentialRefused("the SDK call's credential is not the running invocation's: it belongs to "
                                    "an invocation that has ended")

    # --- db -------------------------------------------------------------------------------

    @property
    def _data(self):
        data = getattr(self._platform, "data", None)
        if data is None:
            raise ServiceUnavailable("the data store is not available on this platform")
        return data

    async def _db_insert(self, instance, m: dict):
        return await self._data.insert(_table(m), m.get("record"), ADMIN)

    async def _db_find(self, instance, m: dict):
        return await self._data.find(_table(m), m.get("where"), ADMIN, order=m.get("order"),
                                     limit=_int(m, "limit", 100), offset=_int(m, "offset", 0))

    async def _db_get(self, instance, m: dict):
        return await self._data.get(_table(m), m.get("id"), ADMIN)

    async def _db_count(self, instance, m: dict):
        return await self._data.count(_table(m), m.get("where"), ADMIN)

    async def _db_update(self, instance, m: dict):
        return await self._data.update(_table(m), m.get("where"), m.get("patch"), ADMIN)

    async def _db_delete(self, instance, m: dict):
        return await self._data.delete(_table(m), m.get("where"), ADMIN)

    async def _db_create_table(self, instance, m: dict):
        return (await self._data.create_table(_table(m), m.get("acl"), ADMIN)).view()

    async def _db_set_acl(self, instance, m: dict):
        info, _ = await self._data.put_table(_table(m), m.get("acl"), ADMIN)
        return info.view()

    async def _db_drop(self, instance, m: dict):
        return await self._data.drop_table(_table(m), ADMIN)

    async def _db_tables(self, instance, m: dict):
        return [t.view() for t in await self._data.list_tables(ADMIN)]

    # --- http -----------------------------------------------------------------------------

    async def _http_request(self, instance, m: dict):
        request = OutboundRequest.from_message(m, self._settings.http_max_request_bytes)
        state = self._state(instance)
        token = m["sdk_token"]
        state.enter(token)
        task = asyncio.ensure_future(self._http_in_turn(instance, state, request))
        state.in_flight.add(task)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # we are being stopped: take the request down too
                task.cancel()
                raise
            # The request was cancelled by `enter`: a later invocation started.
            raise CallAborted("the invocation that made this HTTP request has ended") from None
        finally:
            state.in_flight.discard(task)

    async def _http_in_turn(self, instance, state: _InstanceCalls, request: OutboundRequest):
        deadline = _deadline(instance)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await state.http_slots.acquire()
        except TimeoutError:
            raise CallAborted("the invocation ended while the HTTP request waited for a free slot") from None
        try:
            return await self.proxy.request(request, time_left_s=deadline - time.monotonic())
        finally:
            state.http_slots.release()


def _deadline(instance) -> float:
    """When the running invocation times out (monotonic clock)."""
    deadline = getattr(instance, "deadline", None)
    if deadline is None:
        deadline = time.monotonic() + float(instance.version.timeout_s)
    return deadline


def _table(m: dict) -> str:
    table = m.get("table")
    if not isinstance(table, str):
        raise BadRequest(f"a table name is a string, not {type(table).__name__}")
    return table


def _int(m: dict, key: str, default: int):
    value = m.get(key)
    return default if value is None else value


OPS: dict[str, Op] = {
    "db.insert": SdkHost._db_insert,
    "db.find": SdkHost._db_find,
    "db.get": SdkHost._db_get,
    "db.count": SdkHost._db_count,
    "db.update": SdkHost._db_update,
    "db.delete": SdkHost._db_delete,
    "db.create_table": SdkHost._db_create_table,
    "db.set_acl": SdkHost._db_set_acl,
    "db.drop": SdkHost._db_drop,
    "db.tables": SdkHost._db_tables,
    "http.request": SdkHost._http_request,
}


def _error(exc: FrazilError) -> dict:
    return {"ok": False, "error": {"type": exc.type, "message": exc.message, "status": exc.status}}


async def _answer(reply: dict) -> dict:
    return reply
