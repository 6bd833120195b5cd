"""An invoker's side of routed sync invocations: requests from gateways, run on this node.

The service subscribes to this node's own subject (frazil.cluster.names.invoke_subject), so a
gateway picks the invoker (frazil.cluster.placement). Each request (frazil.cluster.wire) runs
through the node's ordinary engine, `Invoker.invoke_sync`: its tier slots, its pool, its
record writer, so the invocation is recorded exactly as in the embedded mode, with this
node's id as `node`. The reply says one of:

- `done`: it ran (succeeded or not: the run's fields and result);
- `refused`: it did not start, because the tier found no slot within the request's
  `slot_wait_s` (TooManyRequests before anything ran): the gateway may try another invoker;
- `failed`: any other refusal, relayed as it is.

Error policy: a malformed request is answered `failed` (400) when it has a reply subject and
dropped otherwise; an unexpected error while serving one is logged and answered `failed`
(500); nothing a request carries can stop the service. Replies are published on the node's
one connection, so while NATS is away they wait in its buffer (or are lost with it); the
subscription comes back by itself when NATS does (nats-py resubscribes on reconnect).

After a cold start the node heartbeats at once (`beat`), rather than within `heartbeat_s`:
its entry then lists the new warm version, and gateways route the next calls of the version
here (frazil.cluster.placement) a second sooner.

Invariant: every request that completed a message gets at most one reply, and a `refused`
reply is only sent when `invoke_sync` raised before it took a slot, i.e. before anything ran.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from frazil.cluster import wire
from frazil.cluster.names import invoke_subject
from frazil.cluster.nats import unsubscribe
from frazil.errors import BadRequest, FrazilError, TooManyRequests
from frazil.settings import Settings

log = logging.getLogger(__name__)

# How long a stopping invoker lets the invocations it is running finish (and answer).
DRAIN_S = 30.0


class InvokerService:
    def __init__(self, nc, settings: Settings, invoker, node_id: str, beat: Callable[[], Awaitable[None]]):
        self.nc = nc
        self.invoker = invoker
        self.beat = beat  # puts this node's registry entry now (NatsRegistry.beat)
        self._beating: asyncio.Task | None = None
        self.subject = invoke_subject(settings.cluster, node_id)
        # A request is an event (bounded by the gateway) and a head of a few KB.
        self.assembler = wire.Assembler(settings.max_payload_bytes + (1 << 20))
        self._sub = None
        self._serving: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.subject, cb=self._on_message)

    async def _on_message(self, msg) -> None:
        whole = self.assembler.feed(msg)
        if whole is None:
            return
        # One task per request: the subscription's callbacks run one at a time, and an
        # invocation may take its whole timeout.
        task = asyncio.create_task(self._serve(*whole), name="routed-invocation")
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, data: bytes, reply: str) -> None:
        try:
            answer = await self._run(data)
        except Exception:  # noqa: BLE001 - a bug: the gateway still gets an answer
            log.exception("serving a routed invocation failed")
            answer = wire.encode_failed(FrazilError("the invoker failed to run the invocation (see its log)"))
        if not reply:
            return
        try:
            await wire.send(self.nc, reply, answer, "", reply)
        except Exception as exc:  # noqa: BLE001 - NATS gone: the gateway times out, the record stays
            log.warning("could not answer a routed invocation (%s: %s)", type(exc).__name__, exc)

    async def _run(self, data: bytes) -> bytes:
        try:
            request = wire.decode_request(data)
        except wire.WireError as exc:
            return wire.encode_failed(BadRequest(f"the invoker could not read the request: {exc}"))
        try:
            record, _ = await self.invoker.invoke_sync(request.version, request.event_json, request.record,
                                                       timeout_s=request.timeout_s,
                                                       slot_wait_s=request.slot_wait_s)
        except TooManyRequests as exc:
            return wire.encode_refused(exc.message)
        except FrazilError as exc:
            return wire.encode_failed(exc)
        if record.cold:
            self._beat_soon()
        return wire.encode_done(record)

    def _beat_soon(self) -> None:
        """Heartbeat now, unless a heartbeat started for that reason is still on its way."""
        if self._beating is None or self._beating.done():
            self._beating = asyncio.create_task(self._beat_once(), name="warm-heartbeat")

    async def _beat_once(self) -> None:
        try:
            await self.beat()
        except Exception as exc:  # noqa: BLE001 - the regular heartbeat tries again within heartbeat_s
            log.warning("an early heartbeat failed (%s: %s)", type(exc).__name__, exc)

    @property
    def serving(self) -> int:
        return len(self._serving)

    async def close(self) -> None:
        """Take no more requests (gateways then find nobody listening and go elsewhere) and let
        the running ones finish and answer, for at most DRAIN_S."""
        if self._sub is not None:
            await unsubscribe(self._sub, self.subject)
            self._sub = None
        if self._serving:
            await asyncio.wait(list(self._serving), timeout=DRAIN_S)
        if self._beating is not None:
            await asyncio.gather(self._beating, return_exceptions=True)
