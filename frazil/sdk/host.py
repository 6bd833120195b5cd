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
by a function is worthless once its invocation ends.

Bounds: per invocation, at most DB_CALLS_IN_FLIGHT db calls and `http_max_in_flight` HTTP
calls are served at once, and at most `sdk_max_waiting` more of each kind wait for a turn; a
call beyond that is refused at once (`TooManyCalls`), answered without a task or a queue
entry (`Lane`). No call outlives its invocation: the instance runs each as a task of the
invocation, cut off at its deadline and cancelled when it ends (frazil/pool/sdk_calls.py).

Operations (`op`): db.insert, db.find, db.get, db.count, db.update (with atomic `ops`),
db.delete, db.put (a record under a chosen id) (tables), and
db.create_table, db.set_acl, db.drop, db.tables — all as the admin principal, which bypasses
table ACLs; http.request through `HttpProxy`, at most `http_max_in_flight` per instance;
functions.invoke (frazil.sdk.functions).
"""
from __future__ import annotations

import logging
import secrets
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson

from frazil.data.acl import ADMIN
from frazil.errors import BadRequest, FrazilError, ServiceUnavailable
from frazil.outage import classify
from frazil.sdk.egress import Egress
from frazil.sdk.errors import CredentialRefused, TooManyCalls
from frazil.sdk.lanes import Lane
from frazil.sdk.functions import caller_origin, invoke_function
from frazil.sdk.proxy import HttpProxy, OutboundRequest
from frazil.store.textcodec import refused_character

log = logging.getLogger(__name__)

Op = Callable[["SdkHost", Any, dict], Awaitable[Any]]


# db calls one instance may have running at once; more wait their turn. Each is short, but a
# function that fires thousands at once must not monopolise the store every function shares.
DB_CALLS_IN_FLIGHT = 16


@dataclass
class _InvocationLanes:
    """The lanes of the invocation whose token is `token` (one invocation runs at a time on an
    instance; the next one's first call replaces them)."""

    token: str
    lanes: dict[str, Lane] = field(default_factory=dict)  # "db" / "http" -> its lane


class SdkHost:
    def __init__(self, platform):
        self._platform = platform
        self.settings = platform.settings
        self.proxy = HttpProxy(platform.settings)
        self.egress = Egress(self)  # the same proxy for unchanged HTTP clients (HTTP_PROXY)
        # Per-instance state lives as long as the instance object does.
        self._calls: weakref.WeakKeyDictionary[Any, _InvocationLanes] = weakref.WeakKeyDictionary()

    def handle(self, instance, message: dict) -> dict | Awaitable[dict]:
        """Judge one sdk_call now, as its frame arrives (a call read just before its
        invocation's result frame is still that invocation's): a refusal — wrong credential,
        unknown operation, its lane full — is answered at once (the sdk_reply's fields);
        otherwise the coroutine that serves it is returned, holding its place in its lane."""
        op = message.get("op")
        try:
            self._authenticate(instance, message)
            serve = OPS.get(op) if isinstance(op, str) else None
            if serve is None:
                raise BadRequest(f"unknown SDK operation {op!r}")
            lane = self._lane(instance, message["sdk_token"], op.partition(".")[0])
            if not lane.admit():
                raise TooManyCalls(f"{lane.running + lane.waiting} {op.partition('.')[0]} calls of this invocation "
                                   f"are running or waiting already; call refused")
        except CredentialRefused as exc:
            log.info("refused an SDK call (%s) from instance %s: %s", op, instance.id, exc.message)
            return _error(exc)
        except FrazilError as exc:
            return _error(exc)
        return self._serve(instance, message, serve, lane)

    async def _serve(self, instance, message: dict, serve: Op, lane: Lane) -> dict:
        """The reply to one call. Every failure becomes an error reply, never an exception: the
        function waits for this answer, and an unanswered call would hang it until its timeout."""
        op = message.get("op")
        try:
            async with lane.turn():
                value = await serve(self, instance, message)
            # Tried here, where a failure can still be answered: the instance encodes the reply
            # frame later, and a value it cannot encode (a number stored before the storable
            # rule, say) would leave the call unanswered.
            orjson.dumps(value)
            return {"ok": True, "value": value}
        except FrazilError as exc:
            return _error(exc)
        except Exception as exc:  # noqa: BLE001 - the platform's failure, answered all the same
            if refused_character(exc):
                return _error(BadRequest("the call holds a character the database cannot store (U+0000)"))
            outage = classify(exc)
            if outage is not None:
                self._platform_outage(outage)
                return _error(ServiceUnavailable(outage.message))
            log.exception("SDK call %s from instance %s failed", op, getattr(instance, "id", "?"))
            return _error(FrazilError(f"the platform failed to serve {op}: internal error "
                                      f"({type(exc).__name__})"))

    def _platform_outage(self, outage) -> None:
        monitor = getattr(self._platform, "health", None)
        if monitor is not None:
            monitor.report(outage)

    async def close(self) -> None:
        await self.proxy.close()

    def http_lane(self, instance, token: str) -> Lane:
        """The http lane of the invocation whose token is `token` (SDK calls and egress share it)."""
        return self._lane(instance, token, "http")

    def _lane(self, instance, token: str, kind: str) -> Lane:
        """The lane of `kind` ("db", "http") for the invocation whose token is `token`."""
        state = self._calls.get(instance)
        if state is None or state.token != token:
            state = self._calls[instance] = _InvocationLanes(token)
        lane = state.lanes.get(kind)
        if lane is None:
            running = DB_CALLS_IN_FLIGHT if kind == "db" else self.settings.http_max_in_flight
            lane = state.lanes[kind] = Lane(running, self.settings.sdk_max_waiting)
        return lane

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

    def _origin(self, instance):
        """A write from a function fires table triggers one call deeper, for its end user."""
        return caller_origin(self._platform, instance)

    async def _db_insert(self, instance, m: dict):
        return await self._data.insert(_table(m), m.get("record"), ADMIN, origin=self._origin(instance))

    async def _db_find(self, instance, m: dict):
        return await self._data.find(_table(m), m.get("where"), ADMIN, order=m.get("order"),
                                     limit=_int(m, "limit", 100), offset=_int(m, "offset", 0))

    async def _db_get(self, instance, m: dict):
        return await self._data.get(_table(m), m.get("id"), ADMIN)

    async def _db_count(self, instance, m: dict):
        return await self._data.count(_table(m), m.get("where"), ADMIN)

    async def _db_update(self, instance, m: dict):
        return await self._data.update(_table(m), m.get("where"), m.get("patch"), ADMIN, ops=m.get("ops"),
                                       origin=self._origin(instance))

    async def _db_put(self, instance, m: dict):
        record, created = await self._data.put(_table(m), m.get("id"), m.get("record"), ADMIN,
                                               create_only=bool(m.get("create_only")), origin=self._origin(instance))
        return {"record": record, "created": created}

    async def _db_delete(self, instance, m: dict):
        return await self._data.delete(_table(m), m.get("where"), ADMIN, origin=self._origin(instance))

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
        request = OutboundRequest.from_message(m, self.settings.http_max_request_bytes)
        return await self.proxy.request(request, time_left_s=_deadline(instance) - time.monotonic())


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
    "db.put": SdkHost._db_put,
    "db.create_table": SdkHost._db_create_table,
    "db.set_acl": SdkHost._db_set_acl,
    "db.drop": SdkHost._db_drop,
    "db.tables": SdkHost._db_tables,
    "http.request": SdkHost._http_request,
    "functions.invoke": invoke_function,  # calls between functions (frazil.sdk.functions)
}


def _error(exc: FrazilError) -> dict:
    return {"ok": False, "error": {"type": exc.type, "message": exc.message, "status": exc.status}}


