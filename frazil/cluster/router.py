"""A gateway's side of routed sync invocations: choose an invoker, ask it over NATS, relay.

`NatsRouter.invoke` runs one sync invocation on an invoker (frazil.cluster.wire for the
messages, frazil.cluster.invoker_service for the other side):

1. the live invokers come from the node registry, read again whenever it changes (it is
   watched: a join or a clean leave is seen at once) and every `REFRESH_S` (so an invoker
   that died drops out within the registry's TTL and one refresh);
2. they are ranked for the version: idle warm instance first, then rendezvous, then those
   holding more than their share of this gateway's calls in flight behind the others
   (frazil.cluster.placement, `order` and `bounded`);
3. each is asked in turn not to wait for a tier slot to free (`slot_wait_s` 0; an invoker
   whose own leased slots are all taken while the cluster has free ones leases more and runs
   the call: frazil.cluster.slots). One that refuses (full) or that nobody answers for (NATS
   says "no responders": its process is gone) did not start the invocation, so the next is
   asked (both counted in frazil_router_refusals_total). When all are full and the call's
   sync retry window has time left, the first is asked again, waiting for a slot up to what
   is left of the window (as the embedded mode waits); then 429;
4. any other answer is final: the result, a relayed refusal, or a 503 when the answer does
   not come (NATS lost, the invoker left the cluster, or nothing within the version's
   timeout plus REPLY_MARGIN_S). Those are never retried elsewhere: the invoker may have
   started the invocation, and an invocation must not run twice because a reply was lost.

Invariant: a call is sent again, to any invoker, only after an answer that proves the
invocation did not start there (`refused`, or no responders).

Error policy of the refresh loop: a failed registry read is logged once per outage and the
last known invokers are kept; while the NATS connection is down, calls waiting for a reply
fail with 503 at the next refresh, and new calls fail at once.
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import operator
import time
from dataclasses import dataclass, field

from frazil.background import BackgroundLoop, FailureLog
from frazil.cluster import placement, wire
from frazil.cluster.interfaces import NodeInfo, NodeRegistry
from frazil.cluster.names import invoke_subject
from frazil.cluster.nats import shown, unsubscribe
from frazil.errors import FrazilError, ServiceUnavailable, TooManyRequests
from frazil.settings import Role, Settings
from frazil.store.models import FunctionVersion, InvocationRecord

log = logging.getLogger(__name__)

REFRESH_S = 0.5  # the registry is read at least this often (its list is local; a dead node leaves by its TTL)
EMPTY_RETRY_S = 0.1  # with no invoker known, how often a call reads the registry again, within its window
# What a reply may take beyond the slot wait, the instance's start and the version's timeout:
# fetching the code and layers into a cold invoker's cache, a loaded machine.
REPLY_MARGIN_S = 30.0
NO_RESPONDERS = "503"  # the status NATS sends to the reply subject when nobody listens
_subject = functools.lru_cache(maxsize=4096)(invoke_subject)  # a hash per call saved
_node_id = operator.attrgetter("id")


class _NoResponders(Exception):
    """Nobody listened on the invoker's subject: it did not get the request."""


@dataclass
class Directory:
    """The invokers this gateway routes to: the registry's last answer, less those found
    without a listener since (until they heartbeat again: a restarted invoker comes back).

    A version's order is computed once and kept until the live invokers or the warm ones
    change (the registry is read every REFRESH_S, and mostly says the same): hashing every
    invoker for every call would cost more than the rest of the routing."""

    invokers: dict[str, NodeInfo] = field(default_factory=dict)
    warm: dict[tuple[str, int], set[str]] = field(default_factory=dict)  # version -> invokers holding it idle
    suspects: dict[str, float] = field(default_factory=dict)  # node id -> its last_seen when it was found silent
    _orders: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # version -> live ids, in order

    def update(self, nodes: list[NodeInfo]) -> None:
        invokers = {n.id: n for n in nodes if n.role in (Role.INVOKER, Role.ALL)}
        warm: dict[tuple[str, int], set[str]] = {}
        for node in invokers.values():
            for key in node.warm:
                warm.setdefault(tuple(key), set()).add(node.id)
        suspects = {i: seen for i, seen in self.suspects.items()
                    if i in invokers and invokers[i].last_seen <= seen}
        if invokers.keys() != self.invokers.keys() or warm != self.warm or suspects.keys() != self.suspects.keys():
            self._orders = {}
        self.invokers, self.warm, self.suspects = invokers, warm, suspects

    def suspect(self, node: NodeInfo) -> None:
        self.suspects[node.id] = self.invokers[node.id].last_seen if node.id in self.invokers else node.last_seen
        self._orders = {}

    def order(self, key: tuple[str, int]) -> list[NodeInfo]:
        ids = self._orders.get(key)
        if ids is None:
            live = [i for i in self.invokers if i not in self.suspects]
            ids = self._orders[key] = placement.order(live, key, self.warm.get(key, ()))
        return [self.invokers[i] for i in ids]


@dataclass
class _Call:
    node: NodeInfo
    record_id: str
    answer: asyncio.Future


class NatsRouter(BackgroundLoop):
    task_name = "sync-router"

    def __init__(self, nc, settings: Settings, registry: NodeRegistry, metrics=None):
        self.nc = nc
        self.metrics = metrics  # frazil.metrics.Metrics: counts the asks that did not start the call
        self.settings = settings
        self.registry = registry
        self.directory = Directory()
        # A reply is a result (bounded by the instance) with its logs (bounded) and a small head.
        self.assembler = wire.Assembler(settings.max_payload_bytes + settings.log_cap_bytes + (1 << 20))
        self._calls: dict[str, _Call] = {}
        self._in_flight: dict[str, int] = {}  # invoker id -> this gateway's asks awaiting its answer
        self._in_flight_total = 0
        self._tokens = itertools.count(1)
        self._inbox = ""
        self._sub = None
        self._registry_reads = FailureLog(log, "reading the node registry", "routing to the invokers known before")
        self._changed = asyncio.Event()  # the registry said its list changed

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)
        self.registry.on_change(self._changed.set)
        await self.refresh()
        super().start()

    # --- the invokers ---------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the registry; fail the calls whose invoker left it (or restarted)."""
        self.directory.update(await self.registry.nodes())
        for call in list(self._calls.values()):
            now = self.directory.invokers.get(call.node.id)
            if now is None or now.started_at != call.node.started_at:
                self._fail(call, f"invoker {call.node.id} left the cluster while it ran invocation {call.record_id}; "
                                 f"the invocation may have run: see its record")

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), REFRESH_S)
            except asyncio.TimeoutError:
                pass
            self._changed.clear()
            if not self.nc.is_connected:
                for call in list(self._calls.values()):
                    self._fail(call, f"{self._lost_nats()} while waiting for invocation {call.record_id}; "
                                     f"the invocation may have run: see its record")
                continue
            try:
                await self.refresh()
                self._registry_reads.worked()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - kept: the last known invokers
                self._registry_reads.failed(exc)

    def _lost_nats(self) -> str:
        return f"the connection to NATS at {shown(self.settings)} is lost"

    # --- one invocation -------------------------------------------------------------------

    async def invoke(self, version: FunctionVersion, event_json: bytes, record: InvocationRecord, *,
                     timeout_s: float | None, slot_wait_s: float | None) -> None:
        """Run `record` on an invoker and fill it in with the run (see the module docstring).
        Raises TooManyRequests when every invoker stayed full for the window, FrazilError
        for an invoker's refusal, ServiceUnavailable when no answer came."""
        window = self.settings.sync_retry_s if slot_wait_s is None else min(slot_wait_s, self.settings.sync_retry_s)
        deadline = time.monotonic() + window
        while True:
            candidates = placement.bounded(await self._candidates(version, deadline), self._in_flight,
                                           self._in_flight_total, key=_node_id)
            refusal = None
            for node in candidates:
                answer = await self._ask(node, version, event_json, record, timeout_s=timeout_s, slot_wait_s=0.0)
                if answer is None or answer.kind is wire.Reply.REFUSED:
                    refusal = answer.message if answer is not None else refusal
                    continue
                return self._finish(record, answer)
            if refusal is None:
                # Nobody listened anywhere: those invokers are set aside, and the next pass asks
                # whoever the registry lists since (none: 503), within the window.
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(f"no invoker of cluster {self.settings.cluster!r} answered; "
                                             f"try again later")
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TooManyRequests(f"the {version.memory_mb} MB tier is full on every invoker; no slot freed "
                                      f"within {window:g} s, try again later")
            # Every invoker is full: wait for a slot at the first, for what is left of the window.
            answer = await self._ask(candidates[0], version, event_json, record, timeout_s=timeout_s, slot_wait_s=left)
            if answer is None:
                continue
            if answer.kind is wire.Reply.REFUSED:
                raise TooManyRequests(answer.message)
            return self._finish(record, answer)

    async def _candidates(self, version: FunctionVersion, deadline: float) -> list[NodeInfo]:
        """The invokers to ask, in order. With none known, the registry is read again (an
        invoker that joined since the last refresh) until the window ends: then 503."""
        while True:
            if not self.nc.is_connected:
                raise ServiceUnavailable(f"{self._lost_nats()}: sync invocations cannot reach an invoker until it "
                                         f"is back")
            candidates = self.directory.order(version.key)
            if candidates:
                return candidates
            if time.monotonic() >= deadline:
                raise ServiceUnavailable(f"no invoker of cluster {self.settings.cluster!r} is running: start one "
                                         f"with `frazil server --role invoker`")
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the periodic refresh logs registry failures
                pass
            if not self.directory.order(version.key):
                await asyncio.sleep(min(EMPTY_RETRY_S, max(0.0, deadline - time.monotonic())))

    @staticmethod
    def _finish(record: InvocationRecord, answer: wire.Answer) -> None:
        if answer.kind is wire.Reply.FAILED:
            error = FrazilError(answer.message)
            error.status, error.type = answer.status, answer.type  # relayed as the invoker said it
            raise error
        wire.apply_run(record, answer)

    async def _ask(self, node: NodeInfo, version: FunctionVersion, event_json: bytes, record: InvocationRecord, *,
                   timeout_s: float | None, slot_wait_s: float) -> wire.Answer | None:
        """The invoker's answer; None when nobody listened on its subject (then it is set
        aside until it heartbeats again)."""
        token = str(next(self._tokens))
        reply = f"{self._inbox}.{token}"
        loop = asyncio.get_running_loop()
        call = self._calls[token] = _Call(node, record.id, loop.create_future())
        run_s = version.timeout_s if timeout_s is None else min(timeout_s, version.timeout_s)
        wait_s = slot_wait_s + max(10.0, version.timeout_s) + run_s + REPLY_MARGIN_S
        # A timer that fails the call, rather than asyncio.wait_for: no task or future around
        # each call's wait.
        timer = loop.call_later(wait_s, self._fail, call, f"invoker {node.id} did not answer within {wait_s:g} s; "
                                f"invocation {record.id} may have run: see its record")
        self._in_flight[node.id] = self._in_flight.get(node.id, 0) + 1
        self._in_flight_total += 1
        try:
            data = wire.encode_request(version, record, event_json, timeout_s=timeout_s, slot_wait_s=slot_wait_s)
            await wire.send(self.nc, _subject(self.settings.cluster, node.id), data, reply, reply)
            whole = await call.answer
        except _NoResponders:
            self.directory.suspect(node)
            self._refused("gone")
            return None
        except FrazilError:
            raise
        except Exception:  # noqa: BLE001 - publishing failed: NATS is away
            if not self.nc.is_connected:
                raise ServiceUnavailable(f"{self._lost_nats()}: sync invocations cannot reach an invoker until "
                                         f"it is back") from None
            raise
        finally:
            timer.cancel()
            del self._calls[token]
            self._in_flight_total -= 1
            if self._in_flight[node.id] == 1:
                del self._in_flight[node.id]  # no entry kept for an invoker long gone
            else:
                self._in_flight[node.id] -= 1
        try:
            answer = wire.decode_reply(whole)
        except wire.WireError as exc:
            raise ServiceUnavailable(f"invoker {node.id} answered what this gateway cannot read ({exc}); "
                                     f"invocation {record.id} may have run: see its record") from None
        if answer.kind is wire.Reply.REFUSED:
            self._refused("full")
        return answer

    def _refused(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.router_refusals.labels(reason).inc()

    async def _on_reply(self, msg) -> None:
        call = self._calls.get(msg.subject.rsplit(".", 1)[-1])
        if call is None or call.answer.done():
            return  # a late answer to a call given up on
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            call.answer.set_exception(_NoResponders())
            return
        whole = self.assembler.feed(msg)
        if whole is not None:
            call.answer.set_result(whole[0])

    def _fail(self, call: _Call, message: str) -> None:
        if not call.answer.done():
            call.answer.set_exception(ServiceUnavailable(message))

    async def close(self) -> None:
        await super().close()
        for call in list(self._calls.values()):
            self._fail(call, f"the gateway is stopping; invocation {call.record_id} may have run: see its record")
        if self._sub is not None:
            await unsubscribe(self._sub, "the gateway's reply inbox")
